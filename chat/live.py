"""This process's live connections, and how they converge when Redis comes back.

Every open `ChatConsumer` is registered here (weakly: a connection that goes away without
its disconnect handler leaves nothing behind) and removed on disconnect. With the first
connection of an event loop starts that loop's `RedisWatch` (chatproject.redis_watch); with
the last it stops, so an idle loop (a finished test's) keeps no task and no listener.

When the watch says Redis is back (after an outage, a restart or a flush), each live
connection of the process, wherever its user is also connected, converges on its own without
reconnecting: the users' counters are settled against the database in one batch, then each
connection re-registers the rooms it views (presence) and is sent a fresh `unread-state`
snapshot (shared/PROTOCOL.md allows one at any time).
"""

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Protocol

from channels.db import database_sync_to_async

from chat import unread
from chat.app_settings import app_settings
from chatproject.redis_watch import RedisWatch

logger = logging.getLogger(__name__)

# Connections resynced at once: each costs a Redis call and a database read.
_RESYNC_CONCURRENCY = 50


class LiveConnection(Protocol):
    user_id: int

    async def resync(self) -> None:
        """Re-register presence and send a fresh snapshot."""
        ...


@dataclass
class _LoopState:
    connections: "weakref.WeakSet[LiveConnection]" = field(default_factory=weakref.WeakSet)
    watch_task: "asyncio.Task[None] | None" = None


_loops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]" = (
    weakref.WeakKeyDictionary()
)


def connection_opened(connection: LiveConnection) -> None:
    loop = asyncio.get_running_loop()
    state = _loops.setdefault(loop, _LoopState())
    state.connections.add(connection)
    if state.watch_task is None or state.watch_task.done():
        watch = RedisWatch(
            interval=app_settings.REDIS_WATCH_SECONDS,
            on_recovered=lambda reason: resync_all(state, reason),
        )
        state.watch_task = loop.create_task(watch.run(), name="redis-watch")


def connection_closed(connection: LiveConnection) -> None:
    state = _loops.get(asyncio.get_running_loop())
    if state is None:
        return
    state.connections.discard(connection)
    if not state.connections and state.watch_task is not None:
        state.watch_task.cancel()
        state.watch_task = None


def live_connections() -> list[LiveConnection]:
    """This loop's open connections (for tests and metrics)."""
    state = _loops.get(asyncio.get_running_loop())
    return list(state.connections) if state else []


async def resync_all(state: _LoopState, reason: str) -> None:
    connections = list(state.connections)
    if not connections:
        return
    user_ids = sorted({connection.user_id for connection in connections})
    await database_sync_to_async(unread.counts_refresh)(user_ids)
    slots = asyncio.Semaphore(_RESYNC_CONCURRENCY)

    async def resync(connection: LiveConnection) -> None:
        async with slots:
            await connection.resync()

    results = await asyncio.gather(*map(resync, connections), return_exceptions=True)
    failed = [result for result in results if isinstance(result, BaseException)]
    logger.warning(
        "resynced %d connections of %d users after Redis %s (%d failed)",
        len(connections) - len(failed),
        len(user_ids),
        reason,
        len(failed),
    )
    if failed and len(failed) == len(connections):
        raise failed[0]
