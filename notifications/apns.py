"""APNs with token authentication, on aioapns (HTTP/2, one multiplexed connection for many pushes).

One aioapns client per backend, and so per event loop: its connections and futures belong to
the loop that made them, which is why the client is made on the first send, inside that loop.
Every push is bounded by NOTIFICATIONS_PUSH_TIMEOUT_SECONDS: aioapns itself waits for an answer
for as long as the connection lives.

aioapns names Apple's host in class attributes of its protocol classes; APNS_HOST/APNS_PORT
(a test double, a relay) replace them in a subclass made for this backend, never in aioapns'
own classes, so two backends of one process never see each other's host.

Payloads (shared/PROTOCOL.md): a message push is an alert with the payload's title and body,
`aps.badge` = the recipient's absolute unread count, and roomId/messageId/mention beside `aps`
for the app. A silent badge update carries `aps.badge` alone: see `_apns_payload` for why it is
sent as an "alert" push at priority 5.
"""

import asyncio
import hashlib
import json
import logging
import ssl
from pathlib import Path
from typing import Any

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from aioapns.exceptions import MaxAttemptsExceeded
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.app_settings import app_settings
from notifications.backends import PushMessage, PushOutcome, PushTarget
from notifications.push_payload import shorten_to_fit
from notifications.push_settings import push_settings

logger = logging.getLogger(__name__)

# Apple's limit for a regular push's JSON.
MAX_PAYLOAD_BYTES = 4096
PRIORITY_IMMEDIATE = 10
PRIORITY_POWER_SAVING = 5
# The device is gone for good: the app was removed, or the token was never this app's.
GONE_REASONS = frozenset({"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"})
RETRY_REASONS = frozenset({"TooManyRequests", "ServiceUnavailable", "InternalServerError"})


def outcome_for_result(result: NotificationResult) -> PushOutcome:
    if result.is_successful:
        return PushOutcome("delivered")
    reason = result.description or ""
    error = f"{result.status} {reason}".strip()
    if reason in GONE_REASONS or result.status == "410":
        return PushOutcome("gone", error=error)
    status = int(result.status) if result.status.isdigit() else 0
    if reason in RETRY_REASONS or status == 429 or status >= 500:
        return PushOutcome("retry", error=error)
    return PushOutcome("failed", error=error)


class ApnsBackend:
    """A `DeviceBackend` for devices of kind "apns". One per event loop."""

    def __init__(self) -> None:
        self._key_file = push_settings.APNS_KEY_FILE
        self._key_id = push_settings.APNS_KEY_ID
        self._team_id = push_settings.APNS_TEAM_ID
        self._topic = push_settings.APNS_TOPIC
        self._use_sandbox = push_settings.APNS_USE_SANDBOX
        self._host = push_settings.APNS_HOST
        self._port = push_settings.APNS_PORT
        self._timeout = app_settings.PUSH_TIMEOUT_SECONDS
        self._client: APNs | None = None

    @property
    def configured(self) -> bool:
        return bool(self._key_file and self._key_id and self._team_id and self._topic)

    def _make_client(self) -> APNs:
        # The system trust store (SSL_CERT_FILE honoured), and ALPN "h2" as HTTP/2 over TLS asks.
        context = ssl.create_default_context()
        context.set_alpn_protocols(["h2"])
        key = Path(self._key_file).read_text()
        # Checked here, once: aioapns would only fail when signing, on every push.
        if not isinstance(
            serialization.load_pem_private_key(key.encode(), password=None),
            ec.EllipticCurvePrivateKey,
        ):
            raise ValueError("an APNs auth key is an EC (P-256) key")
        client = APNs(
            key=key,
            key_id=self._key_id,
            team_id=self._team_id,
            topic=self._topic,
            use_sandbox=self._use_sandbox,
            ssl_context=context,
            max_connections=push_settings.APNS_MAX_CONNECTIONS,
            # A connection refused is retried by the worker's backoff, not here in a loop.
            max_connection_attempts=2,
            err_func=_ignore_error,  # we report results ourselves, as PushOutcome
        )
        if self._host:
            pool = client.pool
            pool.protocol_class = type(
                "RelayedApnsProtocol",
                (pool.protocol_class,),
                {"APNS_SERVER": self._host, "APNS_PORT": self._port},
            )
        return client

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        if not self.configured:
            return PushOutcome("failed", error="APNs is not configured (APNS_KEY_FILE, ...)")
        if self._client is None:
            try:
                self._client = self._make_client()
            except (OSError, ValueError) as error:
                return PushOutcome("failed", error=f"APNs key unusable: {error}")
        try:
            result = await asyncio.wait_for(
                self._client.send_notification(_request(target, message)), self._timeout
            )
        except TimeoutError:
            return PushOutcome("retry", error=f"no answer from APNs in {self._timeout} s")
        except (ApnsConnectionError, MaxAttemptsExceeded, OSError) as error:
            return PushOutcome("retry", error=f"{type(error).__name__}: {error}".rstrip(": "))
        return outcome_for_result(result)

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.pool.close()
            self._client = None


def _request(target: PushTarget, message: PushMessage) -> NotificationRequest:
    silent = message.silent or message.payload.get("type") == "badge"
    payload = shorten_to_fit(
        message.payload,
        max_bytes=MAX_PAYLOAD_BYTES,
        size=lambda payload: len(_as_aioapns_sends(_apns_payload(payload, silent=silent)[0])),
    )
    apns_payload, push_type, priority = _apns_payload(payload, silent=silent)
    return NotificationRequest(
        device_token=target.address,
        message=apns_payload,
        time_to_live=message.ttl_seconds,
        priority=priority,
        collapse_key=_collapse_id(message.topic) if message.topic else None,
        push_type=push_type,
    )


def _apns_payload(payload: dict[str, Any], *, silent: bool) -> tuple[dict[str, Any], PushType, int]:
    """(the JSON APNs gets, push type, priority) for one of our payloads."""
    aps: dict[str, Any] = {"badge": int(payload.get("badge", 0))}
    if silent:
        # Badge only: no alert, no sound, no content-available. Apple's rules: push type
        # "background" is for content-available pushes that wake the app and must not carry a
        # badge, so a badge change is a user-visible ("alert") push; and a push that does not
        # need to arrive at once takes priority 5, which lets the device batch it for power.
        # The collapse id (the message's topic) keeps only the newest update for a device.
        push_type, priority, data = PushType.ALERT, PRIORITY_POWER_SAVING, {}
    else:
        aps["alert"] = {"title": str(payload.get("title", "")), "body": str(payload["body"])}
        aps["sound"] = "default"
        # Groups a room's notifications together in Notification Center.
        aps["thread-id"] = f"room-{payload['roomId']}"
        push_type, priority = PushType.ALERT, PRIORITY_IMMEDIATE
        data = {
            "roomId": payload["roomId"],
            "messageId": payload["messageId"],
            "mention": bool(payload.get("mention", False)),
        }
    return {"aps": aps, **data}, push_type, priority


def _as_aioapns_sends(apns_payload: dict[str, Any]) -> bytes:
    # The body aioapns puts on the wire (connection.py), whose size is what Apple limits.
    return json.dumps(apns_payload, ensure_ascii=False).encode()


def _collapse_id(topic: str) -> str:
    # APNs refuses an apns-collapse-id over 64 bytes (BadCollapseId); a digest keeps equal
    # topics equal.
    if len(topic.encode()) <= 64:
        return topic
    return hashlib.sha256(topic.encode()).hexdigest()


async def _ignore_error(request: NotificationRequest, result: NotificationResult) -> None:
    """aioapns would log every refused push as an error; the worker records them instead."""
