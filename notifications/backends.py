"""Push backends: the one interface the worker calls, whatever protocol delivers the push.

Real Web Push (VAPID) and APNs backends come with their own issue; they implement `send`.
"""

import asyncio
import logging
from functools import cache
from typing import Protocol

from django.utils.module_loading import import_string

from notifications.app_settings import app_settings
from notifications.events import PushJob

logger = logging.getLogger(__name__)


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
