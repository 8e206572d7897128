"""Hands frames to the channel layer from synchronous code without waiting for Redis.

Signal receivers run in whatever thread committed the message: daphne's ORM thread, an admin
request, a shell. They must not block it on a fan-out (a Channels consumer handles one frame
at a time, so a blocked ORM thread delays the sender's next frame). `publish` queues the
batch on one background event loop per process and returns at once; batches leave in the
order they were queued. `flush` waits for the queue to drain; it runs at exit so a management
command's frames are not lost.
"""

import asyncio
import atexit
import logging
import threading
import time
from typing import Any

from channels.layers import get_channel_layer

from chatproject.metrics import BADGE_LATENCY, FANOUT_FAILURES

logger = logging.getLogger(__name__)

# Bounded pipelines: a 10,000-member room becomes several round trips instead of one
# enormous one, and no batch holds the shard's connection for long.
_CHUNK = 500

GroupSend = tuple[str, dict[str, Any]]


class _Fanout:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock = threading.Lock()
        self._pending = 0
        self._drained = threading.Condition()

    def publish(self, sends: list[GroupSend], *, committed_at: float | None = None) -> None:
        if not sends:
            return
        loop = self._ensure_loop()
        with self._drained:
            self._pending += 1
        asyncio.run_coroutine_threadsafe(self._publish(sends, committed_at), loop)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued batch has left; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._drained:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._drained.wait(remaining)
        return True

    async def _publish(self, sends: list[GroupSend], committed_at: float | None) -> None:
        try:
            layer = get_channel_layer()
            for start in range(0, len(sends), _CHUNK):
                await layer.group_send_many(sends[start : start + _CHUNK])
            if committed_at is not None:
                BADGE_LATENCY.observe(time.perf_counter() - committed_at)
        except Exception:
            FANOUT_FAILURES.inc()
            groups = sorted({group for group, _ in sends})
            logger.exception("could not publish %d frames to groups %s", len(sends), groups[:20])
        finally:
            with self._drained:
                self._pending -= 1
                self._drained.notify_all()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="fanout", daemon=True)
                thread.start()
                self._loop = loop
                atexit.register(self.flush)
            return self._loop


_fanout = _Fanout()
publish = _fanout.publish
flush = _fanout.flush
