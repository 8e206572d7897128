"""The channels-redis pub/sub layer, plus a synchronous, pipelined fan-out.

Consumers receive through the stock layer. Frames are published from synchronous code (the
receiver lanes, an inline receiver in the ORM thread), so `publish_to_groups` publishes with
redis-py's sync client: no hop to an event loop, and a whole fan-out goes out as one
pipeline per shard, where the stock `group_send` costs one round trip per group under a lock.
It must match the layer's wire format: the same serializer (the layer's own `serialize`),
the same group channel name (`{prefix}__group__{group}`) and the same shard choice
(`_consistent_hash`); channels-redis is pinned in requirements.txt for that, and
chat/tests/test_fanout.py checks a consumer receives what this publishes.

Each channel's queue is a `ConnectionQueue` (bounded, coalescing badge frames) instead of the
stock unbounded `asyncio.Queue`: `BoundedPubSubLoopLayer` below, README "Back-pressure".

With `CHAT_FANOUT_HUB` on (the default) `publish_to_groups` publishes one message per shard
to the hub instead of one per group, and each loop's layer subscribes to the hub with its
first group (chatproject/hub.py).
"""

import asyncio
import logging
import threading
import time
import weakref
from collections import defaultdict
from typing import Any

import redis
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _consistent_hash, _wrap_close, decode_hosts
from django.conf import settings

from chatproject.connection_queue import ConnectionQueue
from chatproject.hub import (
    Hub,
    builder,
    encode_event,
    hub_channel,
    hub_enabled,
    probe_event,
)
from chatproject.metrics import (
    CONNECTION_QUEUE_DEPTH_MAX,
    CONNECTION_QUEUED_FRAMES,
    CONNECTION_QUEUES_ABANDONED,
    gauge_reads,
)

logger = logging.getLogger(__name__)

_loop_layers: "weakref.WeakSet[BoundedPubSubLoopLayer]" = weakref.WeakSet()


# A channel nobody has read for this long, in no group (or overflowed), belongs to a consumer
# that is gone (see `_sweep`).
_ABANDONED_SECONDS = 60.0
_SWEEP_EVERY_SECONDS = 5.0


class BoundedPubSubLoopLayer(RedisPubSubLoopLayer):
    """The stock per-event-loop layer, with a bounded queue per channel.

    It also drops the channels of consumers that are gone. The stock layer unsubscribes a
    channel when the consumer's `receive` is cancelled, but channels' `await_many_dispatch`
    only cancels it if it is still waiting: a busy channel's receive has usually already got
    its next message when the disconnect is dispatched, so the channel (its queue and its
    Redis subscription) would stay forever, one per disconnected busy connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _loop_layers.add(self)
        self._swept_at = time.monotonic()
        self.hub: Hub | None = None

    async def _ensure_hub(self) -> Hub:
        """Subscribe this loop to the hub of every shard, once (again after a `flush`)."""
        names = [hub_channel(self.prefix, shard) for shard in range(len(self._shards))]
        if self.hub is None or any(self.channels.get(name) is not self.hub for name in names):
            self.hub = Hub(layer=self, deserialize=self.channel_layer.deserialize)
            for shard, name in zip(self._shards, names, strict=True):
                self.channels[name] = self.hub
                await shard.subscribe(name)
        return self.hub

    async def group_add(self, group: str, channel: str) -> None:
        # Before the group: a member must never miss what is published to it on the hub.
        if hub_enabled():
            await self._ensure_hub()
        await super().group_add(group, channel)

    async def hub_delivers(self, *, patience: float) -> bool:
        """Whether a probe published on each shard's hub comes back to this loop in time."""
        hub = await self._ensure_hub()
        for shard_index, shard in enumerate(self._shards):
            token, returned = hub.expect_probe()
            try:
                await shard.publish(hub_channel(self.prefix, shard_index), probe_event(token))
                await asyncio.wait_for(returned, patience)
            except Exception:  # Redis away, or not delivering yet: the watch tries again
                return False
            finally:
                hub.forget_probe(token)
        return True

    async def _subscribe_to_channel(self, channel: str) -> None:
        self._sweep()
        self.channels[channel] = ConnectionQueue(
            limit=int(getattr(settings, "CHAT_CONNECTION_QUEUE_LIMIT", 200)),
            deserialize=self.channel_layer.deserialize,
        )
        await self._get_shard(channel).subscribe(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        self._sweep()

    def _sweep(self) -> None:
        """Drop channels no consumer reads: none waiting on them for a minute, and in no group
        (a consumer left its groups on disconnect) or overflowed (it stopped taking)."""
        now = time.monotonic()
        if now - self._swept_at < _SWEEP_EVERY_SECONDS:
            return
        self._swept_at = now
        grouped = set().union(*self.groups.values()) if self.groups else set()
        for channel, queue in list(self.channels.items()):
            if not isinstance(queue, ConnectionQueue) or queue.waited_on():
                continue
            if now - queue.last_read < _ABANDONED_SECONDS:
                continue
            if channel in grouped and not queue.overflowed:
                continue
            del self.channels[channel]
            for members in self.groups.values():
                members.discard(channel)
            CONNECTION_QUEUES_ABANDONED.inc()
            asyncio.ensure_future(self._get_shard(channel).unsubscribe(channel))

    async def receive(self, channel: str) -> dict[str, Any]:
        # The stock `receive`, except that the queue hands over messages already decoded
        # (it has to read them to coalesce).
        if channel not in self.channels:
            await self._subscribe_to_channel(channel)
        try:
            message: dict[str, Any] = await self.channels[channel].get()
        except (TimeoutError, asyncio.CancelledError, GeneratorExit):
            if channel in self.channels:
                del self.channels[channel]
                try:
                    await self._get_shard(channel).unsubscribe(channel)
                except BaseException:
                    logger.exception("Unexpected exception while cleaning-up channel:")
            raise
        return message


def _queue_depths() -> list[int]:
    return [
        queue.qsize()
        for layer in list(_loop_layers)
        for queue in list(layer.channels.values())
        if isinstance(queue, ConnectionQueue)
    ]


gauge_reads(CONNECTION_QUEUE_DEPTH_MAX, lambda: max(_queue_depths(), default=0))
gauge_reads(CONNECTION_QUEUED_FRAMES, lambda: sum(_queue_depths()))


class PipelinedPubSubChannelLayer(RedisPubSubChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prefix = kwargs.get("prefix", "asgi")
        self._hosts = decode_hosts(kwargs.get("hosts"))
        self._sync_clients: list[redis.Redis] | None = None
        self._sync_lock = threading.Lock()

    def _get_layer(self) -> BoundedPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        try:
            layer: BoundedPubSubLoopLayer = self._layers[loop]
        except KeyError:
            layer = BoundedPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer

    def connection_queue(self, channel: str) -> ConnectionQueue | None:
        """The queue of a channel of this event loop's layer (None once it is gone)."""
        queue = self._get_layer().channels.get(channel)
        return queue if isinstance(queue, ConnectionQueue) else None

    def hub_active(self) -> bool:
        return hub_enabled()

    def publish_to_groups(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """Publish each (group, message) pair; one Redis round trip per shard (through the
        hub: one PUBLISH per shard, whatever the number of groups)."""
        clients = self._clients()
        if hub_enabled():
            entries: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
            for group, message in sends:
                channel = f"{self._prefix}__group__{group}"
                entries[_consistent_hash(channel, len(clients))].append(
                    (channel, self.serialize(message))
                )
            for shard, pairs in entries.items():
                clients[shard].publish(hub_channel(self._prefix, shard), encode_event(pairs))
            return
        by_shard: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
        for group, message in sends:
            channel = f"{self._prefix}__group__{group}"
            by_shard[_consistent_hash(channel, len(clients))].append(
                (channel, self.serialize(message))
            )
        for shard, publishes in by_shard.items():
            pipe = clients[shard].pipeline(transaction=False)
            for channel, payload in publishes:
                pipe.publish(channel, payload)
            pipe.execute()

    def publish_built(self, name: str, shared: Any, rows: list[tuple[str, Any]]) -> None:
        """Publish a message built by the builder `name` from `shared` and each row's values,
        to each row's group (chatproject/hub.py, "Built messages"): through the hub, one
        PUBLISH per shard carrying `shared` once; otherwise each message built here."""
        if not hub_enabled():
            build = builder(name)
            self.publish_to_groups([(group, build(shared, values)) for group, values in rows])
            return
        clients = self._clients()
        by_shard: dict[int, list[tuple[str, Any]]] = defaultdict(list)
        for group, values in rows:
            channel = f"{self._prefix}__group__{group}"
            by_shard[_consistent_hash(channel, len(clients))].append((channel, values))
        for shard, shard_rows in by_shard.items():
            event = encode_event([(name, shared, shard_rows)])
            clients[shard].publish(hub_channel(self._prefix, shard), event)

    def group_subscriber_counts(self, groups: list[str]) -> dict[str, int]:
        """How many layer connections (one per server process and shard) listen to each group:
        a read-only view of where a group has live members. One PUBSUB NUMSUB per shard."""
        clients = self._clients()
        by_shard: dict[int, list[str]] = defaultdict(list)
        for group in groups:
            channel = f"{self._prefix}__group__{group}"
            by_shard[_consistent_hash(channel, len(clients))].append(channel)
        counts: dict[str, int] = {}
        for shard, channels in by_shard.items():
            for subscribed, count in clients[shard].pubsub_numsub(*channels):
                name = subscribed.decode() if isinstance(subscribed, bytes) else str(subscribed)
                counts[name.removeprefix(f"{self._prefix}__group__")] = int(count)
        return counts

    def _clients(self) -> list[redis.Redis]:
        with self._sync_lock:
            if self._sync_clients is None:
                self._sync_clients = [_sync_client(host) for host in self._hosts]
            return self._sync_clients


def _sync_client(host: dict[str, Any]) -> redis.Redis:
    options = dict(host)
    address = options.pop("address", None)
    if address is not None:
        return redis.Redis.from_url(address, **options)
    return redis.Redis(**options)
