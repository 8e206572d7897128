"""A local Web Push service (RFC 8030) that checks VAPID and decrypts payloads like a browser.

`subscribe()` plays the browser: it makes a P-256 key pair and a 16-byte auth secret, keeps the
private half, and hands out what `PushSubscription.toJSON()` would (endpoint, p256dh, auth).
Each push must carry a valid `vapid t=<JWT>, k=<key>` Authorization (ES256 signature checked
against the expected public key, `aud` = this service's origin, `exp` within 24 h, a `sub`), a
TTL and an aes128gcm body, which is decrypted with the subscription's private key and recorded
on arrival, beside its TTL, Urgency and Topic. What it answers is set per service or per
subscription: 201, 410, 404, 429 with Retry-After, 500, ... and `delay_seconds` makes every
answer slow (the push is recorded when it arrives, answered `delay_seconds` later).

Run it in its own process for benchmarks: `python -m notifications.tests.doubles.webpush`.
"""

import argparse
import asyncio
import base64
import contextlib
import json
import os
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.backends import PushTarget
from notifications.tests.doubles._thread import LoopThread


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Answer:
    status: int = 201
    retry_after: str | None = None


@dataclass
class Subscription:
    """A browser's push subscription, private key included."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    answer: Answer | None = None
    # Answers to give first, one per push, before `answer` (or the service's) takes over.
    script: list[Answer] = field(default_factory=list)

    @property
    def p256dh(self) -> str:
        return _b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @property
    def auth(self) -> str:
        return _b64url(self.auth_secret)

    def as_json(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives a page, and `POST /api/devices` takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def target(self, device_id: int = 1) -> PushTarget:
        return PushTarget(
            device_id=device_id,
            kind="webpush",
            address=self.endpoint,
            keys={"p256dh": self.p256dh, "auth": self.auth},
        )


@dataclass(frozen=True)
class ReceivedPush:
    subscription_id: str
    status: int  # what the service answered
    payload: Any  # the decrypted JSON
    ttl: int
    urgency: str | None
    topic: str | None
    claims: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)


class WebPushService:
    """The service; `start()` runs it on 127.0.0.1 in a thread, `stop()` ends it."""

    def __init__(
        self,
        *,
        vapid_public_key: str | None = None,
        delay_seconds: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.vapid_public_key = vapid_public_key  # None: accept the key the push names
        self.delay_seconds = delay_seconds
        self.answer = Answer()
        self.pushes: list[ReceivedPush] = []
        self.rejections: list[str] = []  # pushes refused for a protocol error, and why
        self.connections: set[tuple[str, int]] = set()  # client (host, port) seen
        self.in_flight = 0
        self.max_in_flight = 0  # most requests the service held at once
        self._ssl = ssl_context
        self._subscriptions: dict[str, Subscription] = {}
        self._verified: dict[str, dict[str, Any]] = {}  # token -> claims
        self._changed = threading.Condition()
        self._thread = LoopThread("webpush-double")
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    # --- control --------------------------------------------------------------------------

    def subscribe(
        self, *, answer: Answer | None = None, script: list[Answer] | None = None
    ) -> Subscription:
        sid = uuid.uuid4().hex
        subscription = Subscription(
            id=sid,
            endpoint=f"{self.origin}/push/{sid}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=os.urandom(16),
            answer=answer,
            script=list(script or []),
        )
        self._subscriptions[sid] = subscription
        return subscription

    def answer_with(self, status: int, retry_after: str | None = None) -> None:
        self.answer = Answer(status, retry_after)

    def delivered(self) -> list[ReceivedPush]:
        return [push for push in self.pushes if 200 <= push.status < 300]

    def wait_for_pushes(self, count: int, timeout: float = 10) -> list[ReceivedPush]:
        """The pushes received so far, once there are at least `count` (else TimeoutError)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.pushes) >= count, timeout):
                raise TimeoutError(f"{len(self.pushes)} pushes of {count} arrived")
            return list(self.pushes)

    async def wait_for_pushes_async(self, count: int, timeout: float = 10) -> list[ReceivedPush]:
        """`wait_for_pushes` for a test whose event loop also runs the sender."""
        deadline = time.monotonic() + timeout
        while len(self.pushes) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.pushes)} pushes of {count} arrived")
            await asyncio.sleep(0.01)
        return list(self.pushes)

    def start(self) -> "WebPushService":
        self._thread.start(self._serve)
        return self

    def stop(self) -> None:
        self._thread.stop(self._shutdown)

    def __enter__(self) -> "WebPushService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, port: int = 0) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/push/{sid}", self._push)
        app.router.add_post("/_subscribe", self._subscribe_over_http)
        app.router.add_get("/_stats", self._stats)
        # The benchmark sends hundreds at once: let the listen queue hold them.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=self._ssl, backlog=2048)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- the protocol ---------------------------------------------------------------------

    async def _push(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.connections.add((peer[0], peer[1]))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            # Recorded on arrival, answered after the delay: a sender killed while it waits
            # has pushed what was recorded, as with a real service.
            response = await self._answer(request)
            if self.delay_seconds and self._closing is not None:
                # Cut short when the service stops, so a long delay never holds the shutdown.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.delay_seconds)
            return response
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        subscription = self._subscriptions.get(request.match_info["sid"])
        if subscription is None:
            return web.Response(status=404, text="no such subscription")
        body = await request.read()
        if len(body) > 4096:  # what every push service must take, and FCM's limit
            with self._changed:
                self.rejections.append(f"payload of {len(body)} bytes")
            return web.Response(status=413)
        try:
            claims = self._check_vapid(request.headers.get("Authorization", ""))
            ttl = int(request.headers["TTL"])
            if request.headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError(f"Content-Encoding {request.headers.get('Content-Encoding')}")
            plain = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth_secret,
                version="aes128gcm",
            )
            payload = json.loads(plain)
        except (KeyError, ValueError, jwt.PyJWTError, http_ece.ECEException) as error:
            with self._changed:
                self.rejections.append(f"{type(error).__name__}: {error}")
                self._changed.notify_all()
            return web.Response(status=400 if not isinstance(error, jwt.PyJWTError) else 403)
        answer = subscription.script.pop(0) if subscription.script else None
        answer = answer or subscription.answer or self.answer
        with self._changed:
            self.pushes.append(
                ReceivedPush(
                    subscription_id=subscription.id,
                    status=answer.status,
                    payload=payload,
                    ttl=ttl,
                    urgency=request.headers.get("Urgency"),
                    topic=request.headers.get("Topic"),
                    claims=claims,
                )
            )
            self._changed.notify_all()
        headers = {"Retry-After": answer.retry_after} if answer.retry_after else {}
        if answer.status == 201:
            headers["Location"] = f"{self.origin}/message/{uuid.uuid4().hex}"
        return web.Response(status=answer.status, headers=headers)

    def _check_vapid(self, authorization: str) -> dict[str, Any]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise jwt.InvalidTokenError(f"Authorization scheme {scheme!r}, not vapid")
        parts = dict(item.strip().split("=", 1) for item in params.split(",") if "=" in item)
        token, key = parts.get("t", ""), parts.get("k", "")
        known = self._verified.get(token)
        if known is not None and known["exp"] > time.time() and key == known["_k"]:
            return known  # a push service checks a token once, then trusts it until exp
        if self.vapid_public_key is not None and key != self.vapid_public_key:
            raise jwt.InvalidTokenError("k is not the application server key")
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), _b64url_decode(key)
        )
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=["ES256"],
            audience=self.origin,
            options={"require": ["aud", "exp", "sub"]},
        )
        if claims["exp"] > time.time() + 24 * 3600:
            raise jwt.InvalidTokenError("exp is more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise jwt.InvalidTokenError("sub must be a mailto: or https: URL")
        self._verified[token] = {**claims, "_k": key}
        return claims

    # --- control over HTTP, for a service in another process (benchmarks) -------------------

    async def _subscribe_over_http(self, request: web.Request) -> web.Response:
        subscription = self.subscribe()
        return web.json_response(subscription.as_json())

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"pushes": len(self.pushes), "rejections": self.rejections[:10]})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a local Web Push service (tests, benchmarks)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--vapid-public-key", default=None)
    args = parser.parse_args(argv)
    service = WebPushService(vapid_public_key=args.vapid_public_key, delay_seconds=args.delay)

    async def run() -> None:
        await service._serve(args.port)
        print(service.origin, flush=True)  # the parent reads where to send
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
