"""The channels-redis pub/sub layer, plus a synchronous, pipelined fan-out.

Consumers receive through the stock layer. Frames are published from synchronous code (the
receiver lanes, an inline receiver in the ORM thread), so `publish_to_groups` publishes with
redis-py's sync client: no hop to an event loop, and a whole fan-out goes out as one
pipeline per shard, where the stock `group_send` costs one round trip per group under a lock.
It must match the layer's wire format: the same serializer (the layer's own `serialize`),
the same group channel name (`{prefix}__group__{group}`) and the same shard choice
(`_consistent_hash`); channels-redis is pinned in requirements.txt for that, and
chat/tests/test_fanout.py checks a consumer receives what this publishes.
"""

import threading
from collections import defaultdict
from typing import Any

import redis
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import _consistent_hash, decode_hosts


class PipelinedPubSubChannelLayer(RedisPubSubChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prefix = kwargs.get("prefix", "asgi")
        self._hosts = decode_hosts(kwargs.get("hosts"))
        self._sync_clients: list[redis.Redis] | None = None
        self._sync_lock = threading.Lock()

    def publish_to_groups(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """Publish each (group, message) pair; one Redis round trip per shard."""
        clients = self._clients()
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
