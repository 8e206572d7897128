"""A local APNs: HTTP/2 over TLS (h2), with a self-signed certificate the tests make.

It checks what Apple checks of token-authenticated pushes (an ES256 provider JWT signed with the
team's key, `kid` = key id, `iss` = team id, a recent `iat`; `apns-topic` = the app's bundle id;
a JSON body of at most 4 KB), records each push's device token, APNs headers and payload, and
answers as told: 200, or an error status with `{"reason": ...}` as Apple does (410
Unregistered, 400 BadDeviceToken, 429 TooManyRequests, 500 InternalServerError, ...).
"""

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded
from h2.exceptions import ProtocolError

from notifications.backends import PushTarget
from notifications.tests.doubles._thread import LoopThread

# --- keys and certificates ----------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # the one to trust (SSL_CERT_FILE)
    cert: Path  # the server's chain
    key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_tls_files(directory: Path) -> TlsFiles:
    """A test CA and a server certificate it signed, for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "push doubles test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(_pem_key(key))
    return files


def server_ssl_context(files: TlsFiles, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


@dataclass(frozen=True)
class ApnsCredentials:
    """An APNs auth key (.p8) as Apple hands one out, with its key id, team and topic."""

    key_file: Path
    public_key: ec.EllipticCurvePublicKey
    key_id: str = "KEY1234567"
    team_id: str = "TEAM123456"
    topic: str = "com.example.chat"

    @classmethod
    def generate(cls, directory: Path) -> "ApnsCredentials":
        key = ec.generate_private_key(ec.SECP256R1())
        key_file = directory / "AuthKey_KEY1234567.p8"
        key_file.write_bytes(_pem_key(key))
        return cls(key_file=key_file, public_key=key.public_key())


# --- the service --------------------------------------------------------------------------


@dataclass(frozen=True)
class ApnsAnswer:
    status: int = 200
    reason: str | None = None  # Apple's error reason, e.g. "Unregistered"


@dataclass(frozen=True)
class ReceivedNotification:
    device_token: str
    headers: dict[str, str]  # apns-topic, apns-push-type, apns-priority, apns-collapse-id, ...
    payload: Any
    claims: dict[str, Any]
    status: int

    @property
    def aps(self) -> dict[str, Any]:
        return dict(self.payload["aps"])


def device_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex digits, like an iOS token


def apns_target(token: str, device_id: int = 1) -> PushTarget:
    return PushTarget(device_id=device_id, kind="apns", address=token)


class ApnsService:
    def __init__(
        self, tls: TlsFiles, credentials: ApnsCredentials, *, delay_seconds: float = 0.0
    ) -> None:
        self.credentials = credentials
        self.tls = tls
        self.delay_seconds = delay_seconds
        self.answer = ApnsAnswer()
        self.answers: dict[str, ApnsAnswer] = {}  # per device token
        self.notifications: list[ReceivedNotification] = []
        self.rejections: list[str] = []
        self.connections = 0  # TLS connections accepted
        self.port = 0
        self._ssl = server_ssl_context(tls, alpn=["h2"])
        self._changed = threading.Condition()
        self._thread = LoopThread("apns-double")
        self._server: asyncio.Server | None = None

    def answer_with(self, status: int, reason: str | None = None) -> None:
        self.answer = ApnsAnswer(status, reason)

    def environment(self) -> dict[str, str]:
        """The environment that points a process (a worker in a subprocess) at this double."""
        return {
            "APNS_KEY_FILE": str(self.credentials.key_file),
            "APNS_KEY_ID": self.credentials.key_id,
            "APNS_TEAM_ID": self.credentials.team_id,
            "APNS_TOPIC": self.credentials.topic,
            "APNS_USE_SANDBOX": "1",
            "APNS_HOST": "127.0.0.1",
            "APNS_PORT": str(self.port),
            "SSL_CERT_FILE": str(self.tls.ca_cert),
        }

    def wait_for_notifications(self, count: int, timeout: float = 10) -> list[ReceivedNotification]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.notifications) >= count, timeout):
                raise TimeoutError(f"{len(self.notifications)} pushes of {count} arrived")
            return list(self.notifications)

    async def wait_for_notifications_async(
        self, count: int, timeout: float = 10
    ) -> list[ReceivedNotification]:
        """`wait_for_notifications` for a test whose event loop also runs the sender."""
        deadline = time.monotonic() + timeout
        while len(self.notifications) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.notifications)} pushes of {count} arrived")
            await asyncio.sleep(0.01)
        return list(self.notifications)

    def start(self) -> "ApnsService":
        self._thread.start(self._serve)
        return self

    def stop(self) -> None:
        self._thread.stop(self._shutdown)

    def __enter__(self) -> "ApnsService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _H2ServerProtocol(self), "127.0.0.1", 0, ssl=self._ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, str | None]:
        """(status, reason) for one request, recorded."""
        if len(body) > 4096:
            with self._changed:
                self.rejections.append(f"payload of {len(body)} bytes")
            return 413, "PayloadTooLarge"
        try:
            token = self._check(headers)
            payload = json.loads(body)
        except (ValueError, jwt.PyJWTError) as error:
            with self._changed:
                self.rejections.append(f"{type(error).__name__}: {error}")
                self._changed.notify_all()
            reason = "InvalidProviderToken" if isinstance(error, jwt.PyJWTError) else "BadRequest"
            return (403 if reason == "InvalidProviderToken" else 400), reason
        device = headers[":path"].removeprefix("/3/device/")
        answer = self.answers.get(device, self.answer)
        kept = {name: value for name, value in headers.items() if name.startswith("apns-")}
        with self._changed:
            self.notifications.append(
                ReceivedNotification(device, kept, payload, token, answer.status)
            )
            self._changed.notify_all()
        return answer.status, answer.reason

    def _check(self, headers: dict[str, str]) -> dict[str, Any]:
        if headers.get(":method") != "POST" or not headers.get(":path", "").startswith(
            "/3/device/"
        ):
            raise ValueError(f"{headers.get(':method')} {headers.get(':path')}")
        if headers.get("apns-topic") != self.credentials.topic:
            raise ValueError(f"apns-topic {headers.get('apns-topic')!r}")
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise jwt.InvalidTokenError("no bearer provider token")
        if jwt.get_unverified_header(token).get("kid") != self.credentials.key_id:
            raise jwt.InvalidTokenError("kid is not the key id")
        claims: dict[str, Any] = jwt.decode(
            token,
            self.credentials.public_key,
            algorithms=["ES256"],
            issuer=self.credentials.team_id,
            options={"require": ["iss", "iat"]},
        )
        # Apple refuses tokens older than an hour (ExpiredProviderToken).
        if not time.time() - 3600 <= claims["iat"] <= time.time() + 60:
            raise jwt.InvalidTokenError("iat is not within the last hour")
        return claims


class _H2ServerProtocol(asyncio.Protocol):
    def __init__(self, service: ApnsService) -> None:
        self.service = service
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, tuple[dict[str, str], bytearray]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.service.connections += 1
        self.conn.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived) and event.stream_id is not None:
                headers = {str(name): str(value) for name, value in event.headers or []}
                self.requests[event.stream_id] = (headers, bytearray())
            elif isinstance(event, DataReceived) and event.stream_id is not None:
                self.requests[event.stream_id][1].extend(event.data or b"")
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
            elif isinstance(event, StreamEnded) and event.stream_id is not None:
                headers, body = self.requests.pop(event.stream_id)
                if self.service.delay_seconds:
                    asyncio.get_running_loop().call_later(
                        self.service.delay_seconds, self._respond, event.stream_id, headers, body
                    )
                else:
                    self._respond(event.stream_id, headers, body)
            elif isinstance(event, ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self._flush()

    def _respond(self, stream_id: int, headers: dict[str, str], body: bytearray) -> None:
        status, reason = self.service.handle(headers, bytes(body))
        response = [(":status", str(status)), ("apns-id", headers.get("apns-id", ""))]
        if reason is None:
            self.conn.send_headers(stream_id, response, end_stream=True)
        else:
            data = json.dumps({"reason": reason}).encode()
            self.conn.send_headers(stream_id, [*response, ("content-type", "application/json")])
            self.conn.send_data(stream_id, data, end_stream=True)
        self._flush()

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())
