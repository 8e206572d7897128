"""The product's push backend in the benchmark: the same 0.5 s wait, plus a timestamp.

Bench messages carry their send time in the body ("bench <perf_counter_ns>"), and every
process on one host shares CLOCK_MONOTONIC, so the worker can tell how long after the send
each push finished: the "whole message" latency of the event-driven design.
"""

import time

from django.conf import settings
from redis.asyncio import Redis as AsyncRedis

from notifications.app_settings import app_settings
from notifications.backends import (
    DelayedLoggingPushBackend,
    PushMessage,
    PushOutcome,
    PushTarget,
)


def pushed_key() -> str:
    """The one key the bench writes: a list of "<send ns> <pushed ns>" entries."""
    return f"{settings.REDIS_KEY_PREFIX}:bench:pushed"


def send_ns_of(body: str) -> int | None:
    parts = body.split()
    if len(parts) >= 2 and parts[0] == "bench" and parts[1].isdigit():
        return int(parts[1])
    return None


class RecordingDelayedPushBackend(DelayedLoggingPushBackend):
    _redis: AsyncRedis | None = None

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        outcome = await super().send(target, message)
        sent_ns = send_ns_of(str(message.payload.get("body", "")))
        if sent_ns is None:
            return outcome
        if self._redis is None:
            # One connection per push in flight at most (redis-py 8 caps pools otherwise).
            self._redis = AsyncRedis.from_url(
                settings.REDIS_URL,
                socket_connect_timeout=2,
                max_connections=app_settings.WORKER_CONCURRENCY + 10,
            )
        await self._redis.rpush(pushed_key(), f"{sent_ns} {time.perf_counter_ns()}")
        return outcome

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
