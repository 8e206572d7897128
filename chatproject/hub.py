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

Built messages: where a fan-out sends each member a message of the same shape with a few
values of its own (a new message's badge frames: the same room and last message, each
member's counts), the publisher sends, instead of a message per member, one entry naming a
builder, the shared part once and a row of values per member (`fanout.publish_built`). The
receiving process builds a member's message only for the members it holds, with the builder
its app registered (`register_builder`, in the app's `ready`): no message per member is
encoded, published or decoded, and the building is spread over the processes. What a builder
returns is delivered like any other message.

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

# A builder makes one member's message from the shared part and the member's row of values.
Builder = Callable[[Any, Any], dict[str, Any]]
_builders: dict[str, Builder] = {}


def register_builder(name: str, build: Builder) -> None:
    """Let messages be published as `name`'s shared part and rows (every process of the
    deployment registers the same builders, in its app's `ready`)."""
    _builders[name] = build


def builder(name: str) -> Builder:
    return _builders[name]


def hub_enabled() -> bool:
    return bool(getattr(settings, "CHAT_FANOUT_HUB", True))


def hub_channel(prefix: str, shard: int) -> str:
    return f"{prefix}__hub__{shard}"


def encode_event(entries: list[tuple[str, bytes]] | list[Any]) -> bytes:
    """One hub message: a list of (group channel, message encoded by the layer's serializer)
    pairs, or of built entries: (builder name, shared part, [(group channel, values), ...])."""
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
        groups = self._layer.groups
        counts = [0, 0]  # written directly, queued
        for entry in entries:
            if len(entry) == 3:
                name, shared, rows = entry
                self._deliver_built(name, shared, rows, counts)
                continue
            group, payload = entry
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
            self._deliver(members, message, counts)
        # Counted once per event: a metric per member would cost as much as the write.
        if counts[0]:
            HUB_DELIVERIES.labels("direct").inc(counts[0])
        if counts[1]:
            HUB_DELIVERIES.labels("queued").inc(counts[1])

    def _deliver_built(self, name: str, shared: Any, rows: Any, counts: list[int]) -> None:
        try:
            build = _builders[name]
        except KeyError:
            logger.error("no builder %r registered here: %d messages dropped", name, len(rows))
            return
        groups = self._layer.groups
        for group, values in rows:
            members = groups.get(group)
            if not members:
                continue
            try:
                message = build(shared, values)
            except Exception:
                logger.exception("builder %r failed for %s", name, group)
                continue
            self._deliver(members, message, counts)

    def _deliver(self, members: Any, message: dict[str, Any], counts: list[int]) -> None:
        """One group's message to its members here: written directly, or queued."""
        channels = self._layer.channels
        encoded: dict[int, bytes] = {}  # each frame's bytes, shared by the group's members
        for channel in list(members):
            try:
                if outlet.write(channel, message, encoded):
                    counts[0] += 1
                    continue
            except Exception:
                # One bad frame or connection must not cost the others their frames.
                logger.exception("direct write to %s failed; queueing instead", channel)
            queue = channels.get(channel)
            if queue is not None:
                queue.put_nowait(message)
                counts[1] += 1

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
