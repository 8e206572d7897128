"""The fan-out hub: one Redis PUBLISH per event per shard, decoded once per process.

The stock pub/sub path publishes a copy of every frame to each member's group channel, and
each receiving process queues that copy for each member's consumer, wakes its task, decodes
it there and dispatches it: ~200 µs per member (bench/REPORT.md). The hub instead publishes a
whole fan-out as one message per shard, a list of (group channel, encoded message) pairs, to
`{prefix}__hub__{shard}`. Every server process's layer subscribes to its shard's hub channel
once (a channel of each event loop's layer, so channels-redis' subscriber re-subscribes it
after a Redis restart like any other), and on receipt:

- splits the list without decoding the messages, and decodes a message only when this event
  loop holds members of its group (the layer's own `groups`, kept by `group_add`),
- hands it to the process-local outlet (chatproject/outlet.py) for each member channel, which
  writes the frames straight to the connection when it can, or else queues the message on
  the channel's bounded queue for the consumer's ordinary dispatch.

Messages are routed by group and type only: the hub never looks inside one, so any type and
any field a publisher adds travel as they are.

Consumers still join the groups' own channels (`group_add`), so `group_send` from anywhere,
`PUBSUB NUMSUB` (chat.presence.connected_processes) and the old path keep working; with
`CHAT_FANOUT_HUB` off, `publish_to_groups` publishes to those channels as before (the
bench's baseline). Every process of a deployment must use the same setting.

A probe (an entry with an empty group name) goes through the hub and comes back to the loop
that sent it: the Redis watch sends one before it resyncs, so a resync starts only once the
hub delivers again.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]
from django.conf import settings

from chatproject import outlet
from chatproject.metrics import HUB_DELIVERIES

logger = logging.getLogger(__name__)

_PROBE = ""


def hub_enabled() -> bool:
    return bool(getattr(settings, "CHAT_FANOUT_HUB", True))


def hub_channel(prefix: str, shard: int) -> str:
    return f"{prefix}__hub__{shard}"


def encode_event(entries: list[tuple[str, bytes]]) -> bytes:
    """One hub message: (group channel, message encoded by the layer's serializer) pairs."""
    packed: bytes = msgpack.packb(entries, use_bin_type=True)
    return packed


def probe_event(token: str) -> bytes:
    return encode_event([(_PROBE, token.encode())])


class Hub:
    """The hub channel's receiver in one event loop's layer, in place of a channel's queue
    (channels-redis' subscriber calls `put_nowait` with each published message)."""

    def __init__(self, *, layer: Any, deserialize: Callable[[bytes], dict[str, Any]]) -> None:
        # The layer, not its dicts: its `flush` replaces them.
        self._layer = layer
        self._deserialize = deserialize
        self._probes: dict[str, asyncio.Future[None]] = {}

    def put_nowait(self, data: bytes) -> None:
        try:
            entries = msgpack.unpackb(data, raw=False, use_list=False)
        except Exception:
            logger.exception("undecodable hub message (%d bytes) dropped", len(data))
            return
        groups, channels = self._layer.groups, self._layer.channels
        direct = queued = 0
        for group, payload in entries:
            members = groups.get(group)
            if not members:
                if group == _PROBE:
                    self._probe_returned(payload)
                continue
            try:
                message = self._deserialize(payload)
            except Exception:
                logger.exception("undecodable message for %s dropped", group)
                continue
            encoded: dict[int, bytes] = {}  # each frame's bytes, shared by the group's members
            for channel in list(members):
                try:
                    if outlet.write(channel, message, encoded):
                        direct += 1
                        continue
                except Exception:
                    # One bad frame or connection must not cost the others their frames.
                    logger.exception("direct write to %s failed; queueing instead", channel)
                queue = channels.get(channel)
                if queue is not None:
                    queue.put_nowait(message)
                    queued += 1
        # Counted once per event: a metric per member would cost as much as the write.
        if direct:
            HUB_DELIVERIES.labels("direct").inc(direct)
        if queued:
            HUB_DELIVERIES.labels("queued").inc(queued)

    def _probe_returned(self, payload: bytes) -> None:
        waiter = self._probes.pop(payload.decode(), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expect_probe(self) -> tuple[str, "asyncio.Future[None]"]:
        token = uuid.uuid4().hex
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probes[token] = waiter
        return token, waiter

    def forget_probe(self, token: str) -> None:
        self._probes.pop(token, None)
