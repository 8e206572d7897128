"""The channels-redis pub/sub layer, plus one pipelined fan-out call.

The stock layer publishes one group message per round trip under a per-shard lock, so a
message to a 1,000-member room costs 1,000 sequential round trips. `group_send_many` sends a
whole fan-out as one pipeline per shard: same wire format, same subscribers, one round trip.
It leans on `RedisPubSubLoopLayer` internals (`_get_group_channel_name`, `_get_shard`,
the shard's `_lock` and `_redis`), which is why channels-redis is pinned in requirements.txt;
tests/test_channel_layer.py catches a change there.
"""

from collections import defaultdict
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer


class PipelinedPubSubChannelLayer(RedisPubSubChannelLayer):
    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """Publish each (group, message) pair; one Redis round trip per shard."""
        layer = self._get_layer()
        by_shard: dict[Any, list[tuple[str, bytes]]] = defaultdict(list)
        for group, message in sends:
            group_channel = layer._get_group_channel_name(group)
            by_shard[layer._get_shard(group_channel)].append(
                (group_channel, self.serialize(message))
            )
        for shard, publishes in by_shard.items():
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for group_channel, payload in publishes:
                    pipe.publish(group_channel, payload)
                await pipe.execute()
