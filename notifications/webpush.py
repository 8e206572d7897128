"""Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payloads (RFC 8291).

`notifications.ece` encrypts the payload (it was pywebpush until the push worker's CPU per push
was measured: see that module) and one shared aiohttp session per backend posts it (so
connections to a push service are kept alive and reused, not opened per push), with our own
TLS context, made from the system trust store when the backend is made: aiohttp's default
context is built when aiohttp is imported, so it would miss an SSL_CERT_FILE set later.

The VAPID JWT is signed once per push service origin and reused until half its life is gone:
signing costs as much as the rest of a push's CPU, and a push service accepts the same token
for every push until it expires (at most 24 hours, RFC 8292 §2).

The message's TTL is always sent (pywebpush defaulted to 0, "deliver now or drop").
Answers become a `PushOutcome`: 201/202 delivered, 404/410 gone, 429 and 5xx retry (after
`Retry-After` when sent), other 4xx failed; timeouts and connection errors retry.
"""

import email.utils
import hashlib
import logging
import re
import ssl
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid

from notifications import ece
from notifications.app_settings import app_settings
from notifications.backends import PushMessage, PushOutcome, PushTarget
from notifications.push_payload import compact_json, shorten_to_fit
from notifications.push_settings import push_settings
from notifications.vapid import VapidKeyError, b64url, configured_vapid_key

logger = logging.getLogger(__name__)

# The 4096 bytes every push service takes (RFC 8030 §7.2), less aes128gcm's header (86 bytes
# with the sender's key), padding delimiter (1) and tag (16).
MAX_PAYLOAD_BYTES = 4096 - 103
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
# RFC 8292 caps a token's life at 24 hours; 12 leaves room for a skewed clock at the service.
VAPID_TOKEN_SECONDS = 12 * 3600


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def outcome_for_status(status: int, *, retry_after: str | None, error: str) -> PushOutcome:
    if 200 <= status < 300:
        return PushOutcome("delivered")
    if status in (404, 410):
        return PushOutcome("gone", error=error)
    if status == 429 or status >= 500:
        return PushOutcome("retry", error=error, retry_after_seconds=parse_retry_after(retry_after))
    return PushOutcome("failed", error=error)


def web_push_topic(topic: str) -> str:
    """`topic` if it is a valid Topic header (RFC 8030 §5.4), else a stable 32-character digest.

    Push services refuse a push whose Topic is longer than 32 characters or not URL-safe base64;
    the digest keeps what matters, that equal topics replace each other.
    """
    if _TOPIC.fullmatch(topic):
        return topic
    return b64url(hashlib.sha256(topic.encode()).digest())[:32]


class _VapidSigner:
    """Authorization headers per push service origin, re-signed before they expire."""

    def __init__(self) -> None:
        key = configured_vapid_key()
        self._vapid = Vapid(key) if key is not None else None
        self._subject = push_settings.WEBPUSH_VAPID_SUBJECT
        self._cache: dict[str, tuple[dict[str, str], float]] = {}

    @property
    def configured(self) -> bool:
        return self._vapid is not None

    def headers_for(self, endpoint: str) -> dict[str, str]:
        assert self._vapid is not None
        audience = _origin(endpoint)
        now = time.time()
        cached = self._cache.get(audience)
        if cached is not None and cached[1] - now > VAPID_TOKEN_SECONDS / 2:
            return cached[0]
        expires = int(now) + VAPID_TOKEN_SECONDS
        headers: dict[str, str] = self._vapid.sign(
            {"aud": audience, "exp": expires, "sub": self._subject}
        )
        self._cache[audience] = (headers, expires)
        return headers


class WebPushBackend:
    """A `DeviceBackend` for devices of kind "webpush". One per event loop."""

    def __init__(self) -> None:
        try:
            self._signer: _VapidSigner | None = _VapidSigner()
        except VapidKeyError:
            logger.exception("WEBPUSH_VAPID_PRIVATE_KEY is unusable: Web Push is off")
            self._signer = None
        self._timeout = aiohttp.ClientTimeout(total=app_settings.PUSH_TIMEOUT_SECONDS)
        # The system trust store, with SSL_CERT_FILE / SSL_CERT_DIR honoured by OpenSSL.
        self._ssl = ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the loop that will use it (aiohttp binds a session to one).
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=push_settings.WEBPUSH_MAX_CONNECTIONS,
                limit_per_host=push_settings.WEBPUSH_MAX_CONNECTIONS,
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        if self._signer is None or not self._signer.configured:
            return PushOutcome("failed", error="Web Push is not configured (no VAPID key)")
        if not _origin(target.address):
            return PushOutcome("failed", error=f"bad endpoint: {target.address[:200]!r}")
        # A silent badge update is low urgency unless the worker said otherwise (backends.py).
        urgency = "low" if message.silent and message.urgency == "normal" else message.urgency
        headers: dict[str, Any] = {**self._signer.headers_for(target.address), "Urgency": urgency}
        if message.topic:
            headers["Topic"] = web_push_topic(message.topic)
        try:
            receiver = ece.receiver_keys(str(target.keys["p256dh"]), str(target.keys["auth"]))
        except KeyError as missing:
            return PushOutcome("failed", error=f"bad subscription: no {missing} key")
        except (ValueError, TypeError) as error:
            # Bad base64 or a point off the curve in p256dh/auth: no retry will fix it.
            return PushOutcome("failed", error=f"bad subscription: {error}")
        headers["TTL"] = str(message.ttl_seconds)
        headers["Content-Encoding"] = "aes128gcm"
        body = ece.encrypt(_payload_bytes(message.payload), receiver)
        try:
            async with self._client().post(target.address, data=body, headers=headers) as response:
                # Read to the end, even when empty: the connection then goes back to the pool.
                text = await response.text(errors="replace")
                if 200 <= response.status < 300:
                    return PushOutcome("delivered")
                described = f"{response.status} {response.reason or ''}: {text.strip()[:200]}"
                return outcome_for_status(
                    response.status,
                    retry_after=response.headers.get("Retry-After"),
                    error=described.strip().rstrip(":"),
                )
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as error:
            return PushOutcome("failed", error=f"bad endpoint: {error}")
        except (TimeoutError, aiohttp.ClientError) as error:
            return PushOutcome("retry", error=f"{type(error).__name__}: {error}".rstrip(": "))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _payload_bytes(payload: dict[str, Any]) -> bytes:
    data = compact_json(payload)
    if len(data) <= MAX_PAYLOAD_BYTES:
        return data
    shorter = shorten_to_fit(
        payload, max_bytes=MAX_PAYLOAD_BYTES, size=lambda candidate: len(compact_json(candidate))
    )
    return compact_json(shorter)


@lru_cache(maxsize=50_000)
def _origin(address: str) -> str:
    """The push service origin of an endpoint (the VAPID audience); empty if not an http(s) URL.
    Cached: parsing the same endpoint's URL twice per push showed in the worker's profile."""
    parts = urlsplit(address)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return ""
    return f"{parts.scheme}://{parts.netloc}"
