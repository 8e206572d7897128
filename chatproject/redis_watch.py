"""Notice when Redis comes back, or comes back empty, and say so once: `RedisWatch`.

While Redis is away, frames published through the pub/sub layer are dropped and the
receivers' counter updates fail, and nothing tells an open connection that it missed them.
A restart or a flush of a Redis that keeps nothing on disk also empties the counters and the
presence entries. So each server process runs one watch per event loop: every `interval`
seconds it asks Redis, on a client of its own that does not retry (redis-py's default retry
would reconnect silently and hide the failure), three things in one round trip:

- does this process's sentinel key still exist? (gone: flushed, or a restart that lost data)
- what is the server's `run_id`? (changed: restarted, even if it kept its data)
- and it re-sets the sentinel.

A failure is checked again at once on a new connection (a restart between two checks only
breaks our socket); a second failure marks Redis down. When Redis answers again after a
failure, or the sentinel is missing, or the run id changed, the watch first waits until the
channel layer delivers again (a probe sent to a channel of its own comes back: channels-redis'
subscriber reconnects and re-subscribes on its own, about a second after Redis returns, and
calls no hook, see channels_redis#406), then awaits `on_recovered(reason)` once. Frames
published after that reach every connection; the caller resends whatever was missed before
(chat.live).
"""

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer
from prometheus_client import Counter
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatproject.redis_client import async_redis_connection, prefixed

logger = logging.getLogger(__name__)

REDIS_RECOVERIES = Counter(
    "redis_recoveries_total",
    "Times this process saw Redis come back (reconnected, restarted or emptied) and resynced.",
    ["reason"],
)

# Set while a watch of this process finds Redis unreachable.
_unreachable = threading.Event()


def redis_unreachable() -> bool:
    """True while this process's watch finds Redis unreachable. Hot paths (presence, the
    rate limit, counts) then skip their Redis copy at once: an unreachable host that drops
    packets would otherwise cost each call its connect timeouts and retries, seconds spent
    in the one ORM thread every request of the process shares."""
    return _unreachable.is_set()


# A process that dies leaves its sentinel behind this long at most.
_SENTINEL_TTL_SECONDS = 3600


def sentinel_key_pattern() -> str:
    """A glob for every process's sentinel key: whoever clears keys around a running server
    (the tests' cleanup between tests) must spare these, or that server believes Redis was
    emptied and resyncs its connections mid-test."""
    return prefixed("watch", "*")


_PROBE_ATTEMPTS = 20


class RedisWatch:
    def __init__(self, *, interval: float, on_recovered: Callable[[str], Awaitable[None]]) -> None:
        self.interval = interval
        self.on_recovered = on_recovered
        self.sentinel = prefixed("watch", uuid.uuid4().hex)
        self._run_id: str | None = None
        self._pending: str | None = None  # why we must converge, until on_recovered succeeds
        self._probe_channel: str | None = None
        self._probe_receive: asyncio.Future[Any] | None = None

    async def run(self) -> None:
        redis = async_redis_connection(
            socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        try:
            await self._check(redis, first=True)
            while True:
                await asyncio.sleep(self.interval)
                await self._check(redis, first=False)
        finally:
            _unreachable.clear()
            if self._probe_receive is not None:
                self._probe_receive.cancel()
            with contextlib.suppress(Exception):
                await redis.delete(self.sentinel)
            await redis.aclose()

    async def _check(self, redis: AsyncRedis, *, first: bool) -> None:
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.exists(self.sentinel)
            pipe.set(self.sentinel, "1", ex=_SENTINEL_TTL_SECONDS)
            pipe.info("server")
            existed, _, info = await asyncio.wait_for(pipe.execute(), self.interval + 2)
        except Exception as error:  # any failure at all means "down"
            was_up = self._pending != "reconnected"
            self._pending = "reconnected"
            if was_up:
                # Often only our socket died with a Redis that restarted since the last
                # check: a new connection at once may find it back.
                logger.warning("Redis connection failed (%s); checking again", error)
                await self._check(redis, first=first)
            elif not _unreachable.is_set():
                logger.warning("Redis is unreachable (%s); will resync when it answers", error)
                _unreachable.set()
            return
        _unreachable.clear()
        run_id = str(info.get("run_id", ""))
        if not first:
            if not existed and self._pending is None:
                self._pending = "emptied"
            if self._run_id is not None and run_id != self._run_id and self._pending is None:
                self._pending = "restarted"
        self._run_id = run_id
        if self._pending is None:
            return
        reason = self._pending
        if not await self._channel_layer_delivers():
            logger.warning("channel layer does not deliver yet; resync postponed")
            return
        logger.warning("Redis is back (%s): resyncing this process's connections", reason)
        try:
            await self.on_recovered(reason)
        except Exception:
            logger.exception("resync after Redis came back failed; retrying")
            return
        REDIS_RECOVERIES.labels(reason).inc()
        if self._pending == reason:
            self._pending = None

    async def _channel_layer_delivers(self) -> bool:
        """Send a probe to our own channel until it comes back (the subscriber is live), and
        one through the fan-out hub (chatproject/hub.py) when it is on."""
        layer = get_channel_layer()
        if getattr(layer, "hub_active", lambda: False)() and not await self._hub_delivers(layer):
            return False
        for _ in range(_PROBE_ATTEMPTS):
            try:
                if self._probe_channel is None:
                    self._probe_channel = await layer.new_channel("watch.")
                if self._probe_receive is None or self._probe_receive.done():
                    self._probe_receive = asyncio.ensure_future(layer.receive(self._probe_channel))
                await layer.send(self._probe_channel, {"type": "watch.probe"})
            except Exception:
                await asyncio.sleep(self.interval)
                continue
            # Waiting must not cancel the receive: a cancelled receive unsubscribes.
            done, _ = await asyncio.wait({self._probe_receive}, timeout=1)
            if done:
                with contextlib.suppress(Exception):
                    self._probe_receive.result()
                    return True
        return False

    async def _hub_delivers(self, layer: Any) -> bool:
        for _ in range(_PROBE_ATTEMPTS):
            if await layer.hub_delivers(patience=1):
                return True
            await asyncio.sleep(self.interval)
        return False
