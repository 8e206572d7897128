"""Push backends: the one interface the worker calls, whatever protocol delivers the push.

Real Web Push (VAPID) and APNs backends come with their own issue; they implement `send`.

The per-device contract below (`DeviceBackend`) is the one the worker moves to: the worker decides
who gets a push and when, and hands a backend one device and one ready payload; the backend only
speaks its protocol and says what happened, as a `PushOutcome` (it does not raise for answers of
the push service, only for bugs).
"""

import asyncio
import logging
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, Protocol

from django.utils.module_loading import import_string

from notifications.app_settings import app_settings
from notifications.events import PushJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushTarget:
    """What a backend needs of a `Device`."""

    device_id: int
    kind: str  # Device.Kind: "webpush" or "apns"
    address: str  # the Web Push endpoint URL or the APNs device token
    keys: dict[str, str] = field(default_factory=dict)  # Web Push p256dh and auth


@dataclass(frozen=True)
class PushMessage:
    """One push, protocol-neutral.

    `payload` is the JSON of shared/PROTOCOL.md: `{"type": "chat-message", "roomId", "messageId",
    "title", "body", "badge"}`, or `{"type": "badge", "badge"}` for a silent badge update
    (`silent=True`: APNs badge-only background push, Web Push with low urgency).
    `topic` replaces an older push of the same topic still waiting in the push service (Web Push
    `Topic`, at most 32 URL-safe base64 characters; APNs `apns-collapse-id`).
    """

    payload: dict[str, Any]
    silent: bool = False
    ttl_seconds: int = 24 * 3600
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    topic: str | None = None


@dataclass(frozen=True)
class PushOutcome:
    """What the push service answered.

    delivered: accepted (2xx). gone: the device is no more (Web Push 404/410, APNs Unregistered
    or BadDeviceToken): deactivate it, never retry. retry: worth trying again (429, 5xx, a
    timeout or a connection error), no sooner than `retry_after_seconds` when the service said
    (Retry-After). failed: will never succeed as sent (other 4xx); do not retry.
    """

    status: Literal["delivered", "gone", "retry", "failed"]
    error: str = ""
    retry_after_seconds: float | None = None


class DeviceBackend(Protocol):
    """Speaks one push protocol. Made once per event loop; `aclose` when the loop is done."""

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome: ...

    async def aclose(self) -> None: ...


class PushBackend(Protocol):
    async def send(self, job: PushJob) -> None:
        """Deliver the job's push to its recipients' devices; raise to report a failure."""


class LoggingPushBackend:
    """Logs what it would push. The default until real protocols land."""

    async def send(self, job: PushJob) -> None:
        logger.info(
            "push message %s of room %s to users %s",
            job["message_id"],
            job["room_id"],
            job["recipient_ids"],
        )


class DelayedLoggingPushBackend(LoggingPushBackend):
    """A push service that takes NOTIFICATIONS_PUSH_DELAY_SECONDS to answer (benchmarks)."""

    async def send(self, job: PushJob) -> None:
        await asyncio.sleep(app_settings.PUSH_DELAY_SECONDS)
        await super().send(job)


class FailingPushBackend:
    """A push service that is down: every send raises (tests, failure drills)."""

    async def send(self, job: PushJob) -> None:
        raise ConnectionError("push service unavailable")


@cache
def push_backend() -> PushBackend:
    backend: PushBackend = import_string(app_settings.PUSH_BACKEND)()
    return backend
