"""What the synchronous fan-out publishes is what channels-redis' consumers receive."""

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chatproject import fanout
from chatproject.channel_layer import PipelinedPubSubChannelLayer
from chatproject.embedded_redis import _start_embedded_redis


async def _received(layer: Any, channel: str) -> dict[str, Any]:
    message: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), 3)
    return message


async def test_published_frames_reach_every_member_of_each_group() -> None:
    layer = get_channel_layer()
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("user.1", first)
    await layer.group_add("user.1", second)
    await layer.group_add("user.2", second)
    sends = [
        ("user.1", {"type": "chat.frames", "frames": [{"type": "a"}]}),
        ("user.2", {"type": "chat.frames", "frames": [{"type": "b"}]}),
    ]
    await sync_to_async(fanout.publish)(sends)
    assert (await _received(layer, first))["frames"] == [{"type": "a"}]
    got = [(await _received(layer, second))["frames"] for _ in range(2)]
    assert sorted(got, key=str) == [[{"type": "a"}], [{"type": "b"}]]
    await layer.group_discard("user.1", first)
    await layer.group_discard("user.1", second)
    await layer.group_discard("user.2", second)


async def test_sharded_layers_agree_on_where_a_group_lives() -> None:
    """With two Redis servers, publish picks the shard the subscribers listen on.

    Pub/sub does not cross servers, so a publish to the wrong shard is never received.
    """
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]  # type: ignore[index]
    second = {**host, "address": _start_embedded_redis()}
    layer = PipelinedPubSubChannelLayer(
        hosts=[host, second], prefix=f"{settings.REDIS_KEY_PREFIX}:sharded"
    )
    channels = [await layer.new_channel() for _ in range(6)]
    for index, channel in enumerate(channels):
        await layer.group_add(f"g{index}", channel)
    await sync_to_async(layer.publish_to_groups)(
        [(f"g{index}", {"type": "x", "n": index}) for index in range(6)]
    )
    for index, channel in enumerate(channels):
        assert (await _received(layer, channel))["n"] == index
    await layer.flush()
