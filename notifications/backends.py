"""Push backends: the one interface the worker calls, whatever protocol delivers the push.

The worker decides who gets a push and when, and hands a backend one device and one ready
payload; the backend only speaks its protocol and says what happened, as a `PushOutcome` (it
does not raise for answers of the push service, only for bugs). The real protocols live in
`notifications.webpush` and `notifications.apns`; the backends here log (the default for a kind
whose keys are not configured), wait or fail, for tests, drills and the benchmark.

`DeviceBackends` is what a worker holds: one backend per device kind, made on first use inside
the worker's event loop (a backend may keep an HTTP session bound to it) and closed with it.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from django.conf import settings
from django.utils.module_loading import import_string

from notifications.app_settings import app_settings

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
    "title", "body", "badge", "mention"}`, or `{"type": "badge", "badge"}` for a silent badge update
    (`silent=True`: APNs badge-only background push, Web Push with low urgency).
    `topic` replaces an older push of the same topic still waiting in the push service (Web Push
    `Topic`, at most 32 URL-safe base64 characters; APNs `apns-collapse-id`).
    """

    payload: dict[str, Any]
    silent: bool = False
    ttl_seconds: int = 24 * 3600
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    topic: str | None = None


OutcomeStatus = Literal["delivered", "gone", "retry", "failed"]


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


class LoggingPushBackend:
    """Logs what it would push and calls it delivered: the default for an unconfigured kind."""

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        logger.info(
            "push to %s device %s: %s%s",
            target.kind,
            target.device_id,
            message.payload,
            " (silent)" if message.silent else "",
        )
        return PushOutcome("delivered")

    async def aclose(self) -> None:
        return None


class DelayedLoggingPushBackend(LoggingPushBackend):
    """A push service that takes NOTIFICATIONS_PUSH_DELAY_SECONDS to answer (benchmarks)."""

    def __init__(self) -> None:
        # Read once: a settings lookup per push was a twentieth of the worker's CPU per push.
        self.delay = app_settings.PUSH_DELAY_SECONDS

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        await asyncio.sleep(self.delay)
        return await super().send(target, message)


class FailingPushBackend:
    """A push service that is down: every send answers NOTIFICATIONS_FAILING_OUTCOME
    ("retry" by default; "failed" or "gone" for the other drills)."""

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        status = getattr(settings, "NOTIFICATIONS_FAILING_OUTCOME", "retry")
        return PushOutcome(cast(OutcomeStatus, status), error="push service unavailable")

    async def aclose(self) -> None:
        return None


class DeviceBackends:
    """One backend per device kind (app_settings.PUSH_BACKENDS), made on first use."""

    def __init__(self, overrides: dict[str, DeviceBackend] | None = None) -> None:
        self._backends: dict[str, DeviceBackend] = dict(overrides or {})

    def for_kind(self, kind: str) -> DeviceBackend:
        backend = self._backends.get(kind)
        if backend is None:
            path = app_settings.PUSH_BACKENDS.get(kind)
            if path is None:
                raise LookupError(f"no push backend for device kind {kind!r}")
            backend = self._backends[kind] = import_string(path)()
        return backend

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in {id(b): b for b in backends}.values():
            try:
                await backend.aclose()
            except Exception:
                logger.exception("closing push backend %r failed", backend)
