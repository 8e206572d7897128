"""A connection's outgoing queue: bounded, and coalescing badge frames while it is behind.

channels-redis' pub/sub layer gives every channel an unbounded `asyncio.Queue`; a consumer that
cannot deliver (its client stopped reading, see `chatproject.backpressure`) would let it grow
forever. This queue replaces it (`chatproject.channel_layer`) with the same `get`/`put_nowait`.

Badge frames are a copy of a state, so only the newest of each kind matters: the newest
`chat-room-updated` per room, the newest `total-unread-count-updated` per room (by `version`,
and the newest total is the highest of those versions) and the newest `unread-state`. A newer
one replaces the queued one and moves to the tail, so what is left stays in version order, the
order a client applies them in. `chat-message` frames and anything else cannot be coalesced:
they count toward `limit`, and the frame that would pass it empties the queue and marks it
`overflowed`, since the connection has then lost a frame it cannot get back and must be closed
(4008) so its client resyncs from a snapshot.

A connection is behind when its consumer waits for the client to read (`behind`, set by
`chatproject.backpressure`) or when `coalesce_after` frames are already waiting. Until then
messages queue as published, so a client that keeps up sees every frame (a consumer busy for a
moment with a database call is not behind), and a message goes straight to a consumer that is
waiting for one.
"""

import asyncio
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from chatproject.metrics import CONNECTION_FRAMES_COALESCED, CONNECTION_FRAMES_DROPPED

Message = dict[str, Any]

# How many queued badge frames one `get` hands over as one `chat.frames` message.
_MERGE = 64
# Frames waiting before a connection counts as behind even while its client still reads.
COALESCE_AFTER = 32


def coalescing_key(frame: Any) -> tuple[Any, ...] | None:
    """Frames with the same key supersede each other; None: this frame cannot be dropped."""
    if not isinstance(frame, dict):
        return None
    kind = frame.get("type")
    if kind == "total-unread-count-updated" and isinstance(frame.get("version"), int):
        return ("total", frame.get("roomId"))
    if kind == "chat-room-updated":
        return ("room", frame.get("roomId"))
    if kind == "unread-state" and isinstance(frame.get("version"), int):
        return ("state",)
    return None


class ConnectionQueue:
    def __init__(
        self,
        *,
        limit: int,
        deserialize: Callable[[bytes], Message],
        coalesce_after: int = COALESCE_AFTER,
    ) -> None:
        self.limit = limit
        self.coalesce_after = coalesce_after
        self.behind = False
        self.overflowed = False
        self._deserialize = deserialize
        # Coalescing keys map to one frame each; other entries get a unique int key and hold
        # the raw message (undecoded until it is taken) with how many frames it carries.
        self._entries: OrderedDict[Any, Any] = OrderedDict()
        self._raw_frames = 0  # frames held in those entries
        self._raw_entries = 0  # how many such entries
        self._uncoalescible = 0  # of their frames, those that could not be coalesced: the limit
        self._ids = itertools.count()
        self._getters: deque[asyncio.Future[Message]] = deque()
        self.last_read = time.monotonic()

    def waited_on(self) -> bool:
        """Whether a consumer is waiting for this queue's next message right now."""
        for getter in self._getters:
            if not getter.done():
                return True
        return False

    def qsize(self) -> int:
        """Frames waiting (what the limit and the depth metric count)."""
        return self._raw_frames + len(self._entries) - self._raw_entries

    def empty(self) -> bool:
        return not self._entries

    def discard(self) -> None:
        """The connection is being closed: drop what waits and, undecoded, all that follows."""
        CONNECTION_FRAMES_DROPPED.inc(self.qsize())
        self._entries.clear()
        self._raw_frames = self._raw_entries = self._uncoalescible = 0
        self.overflowed = True

    def put_nowait(self, data: bytes | Message) -> None:
        """Queue a message as published (bytes) or already decoded (from chatproject.hub)."""
        if self.overflowed:
            CONNECTION_FRAMES_DROPPED.inc()
            return
        message = data if isinstance(data, dict) else self._deserialize(data)
        while self._getters and not self._entries:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(message)
                return
        frames = message.get("frames")
        if message.get("type") != "chat.frames" or not isinstance(frames, list):
            self._put_raw(data, 1, 1)
            return
        kept = [frame for frame in frames if coalescing_key(frame) is None]
        if not self.behind and self.qsize() < self.coalesce_after:
            self._put_raw(data, len(frames), len(kept))
            return
        if kept:
            self._put_raw(
                data if len(kept) == len(frames) else {**message, "frames": kept},
                len(kept),
                len(kept),
            )
        if len(kept) < len(frames):
            for frame in frames:
                key = coalescing_key(frame)
                if key is not None:
                    self._put_coalescing(key, frame)
        self._wake()

    def _put_raw(self, entry: bytes | Message, frames: int, uncoalescible: int) -> None:
        """Queue a message as it is; only its `uncoalescible` frames count toward the limit
        (a batch of badge frames for one user is one message, however long)."""
        if self._uncoalescible + uncoalescible > self.limit:
            CONNECTION_FRAMES_DROPPED.inc(frames)
            self.discard()
            return
        self._raw_frames += frames
        self._raw_entries += 1
        self._uncoalescible += uncoalescible
        self._entries[next(self._ids)] = (entry, frames, uncoalescible)
        self._wake()

    def _put_coalescing(self, key: tuple[Any, ...], frame: Message) -> None:
        queued = self._entries.get(key)
        if queued is not None:
            CONNECTION_FRAMES_COALESCED.inc()
            version = frame.get("version")
            if isinstance(version, int) and queued.get("version", 0) > version:
                return  # an older copy arriving late: the queued one stays where it is
            del self._entries[key]
        self._entries[key] = frame

    def _wake(self) -> None:
        while self._getters and self._entries:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(self._take())

    async def get(self) -> Message:
        self.last_read = time.monotonic()
        if self._entries:
            return self._take()
        getter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._getters.append(getter)
        # Cancelled (the consumer is stopping), the getter is skipped by `_wake`; channels-redis
        # then drops the channel, so a message handed over at that instant has no one to go to.
        return await getter

    def _take(self) -> Message:
        key, entry = self._entries.popitem(last=False)
        if not isinstance(key, tuple):
            raw, frames, uncoalescible = entry
            self._raw_frames -= frames
            self._raw_entries -= 1
            self._uncoalescible -= uncoalescible
            return self._deserialize(raw) if isinstance(raw, bytes) else raw
        merged = [entry]
        while len(merged) < _MERGE and self._entries:
            key = next(iter(self._entries))
            if not isinstance(key, tuple):
                break
            merged.append(self._entries.pop(key))
        return {"type": "chat.frames", "frames": merged}
