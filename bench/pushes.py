"""The product's push backend in the benchmark: the same 0.5 s wait, plus a timestamp.

Bench messages carry their send time in the body ("bench <perf_counter_ns>"), and every
process on one host shares CLOCK_MONOTONIC, so the worker can tell how long after the send
each push finished: the "whole message" latency of the event-driven design.
"""

import asyncio
import time

from django.conf import settings
from redis.asyncio import Redis as AsyncRedis

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
    """Notes each push's finish time, batched: one RPUSH per `_FLUSH_SECONDS` for all pushes
    done meanwhile (a round trip per push would cost the worker and Redis more CPU than the
    product's own work per push, and take it from the processes being measured)."""

    _FLUSH_SECONDS = 0.05
    _redis: AsyncRedis | None = None
    _pending: list[str]
    _flusher: "asyncio.Task[None] | None" = None

    async def send(self, target: PushTarget, message: PushMessage) -> PushOutcome:
        outcome = await super().send(target, message)
        sent_ns = send_ns_of(str(message.payload.get("body", "")))
        if sent_ns is None:
            return outcome
        if not hasattr(self, "_pending"):
            self._pending = []
        self._pending.append(f"{sent_ns} {time.perf_counter_ns()}")
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())
        return outcome

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._FLUSH_SECONDS)
        await self._flush()

    async def _flush(self) -> None:
        entries, self._pending = getattr(self, "_pending", []), []
        if not entries:
            return
        if self._redis is None:
            self._redis = AsyncRedis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        await self._redis.rpush(pushed_key(), *entries)

    async def aclose(self) -> None:
        if self._flusher is not None:
            await self._flusher  # at most `_FLUSH_SECONDS`
        await self._flush()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
