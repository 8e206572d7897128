"""The fan-out hub (chatproject/hub.py): one publish per shard, back after a Redis restart, and
the old per-group path with `CHAT_FANOUT_HUB` off."""

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings

from chat.tests.helpers import (
    PATIENCE_S,
    close_quietly,
    connect_user,
    eventually,
    make_room,
    make_user,
)
from chat.tests.processes import OwnRedis
from chatproject import fanout
from chatproject.channel_layer import PipelinedPubSubChannelLayer
from chatproject.hub import hub_channel, register_builder

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_fan_out_is_one_publish_per_shard() -> None:
    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(50)]
    for index, channel in enumerate(channels):
        await layer.group_add(f"user.{index}", channel)
    hub = layer._get_layer().hub
    assert hub is not None
    published: list[tuple[str, int]] = []
    client = layer._clients()[0]
    real_publish = client.publish

    def counting_publish(channel: str, data: bytes) -> Any:
        published.append((channel, len(data)))
        return real_publish(channel, data)

    client.publish = counting_publish
    try:
        sends = [(f"user.{i}", {"type": "chat.frames", "frames": [{"n": i}]}) for i in range(50)]
        await sync_to_async(fanout.publish)(sends)
        for index, channel in enumerate(channels):
            got = await asyncio.wait_for(layer.receive(channel), PATIENCE_S)
            assert got["frames"] == [{"n": index}]
    finally:
        del client.publish
        for index, channel in enumerate(channels):
            await layer.group_discard(f"user.{index}", channel)
    assert [channel for channel, _ in published] == [hub_channel(layer._prefix, 0)]


async def test_the_hub_delivers_again_after_redis_restarts() -> None:
    redis = OwnRedis()
    redis.start()
    host = {**settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0], "address": redis.url}  # type: ignore[index]
    layer = PipelinedPubSubChannelLayer(hosts=[host], prefix=f"{settings.REDIS_KEY_PREFIX}:own")
    try:
        channel = await layer.new_channel()
        await layer.group_add("user.1", channel)
        assert await layer.hub_delivers(patience=PATIENCE_S)
        redis.stop()
        assert not await layer.hub_delivers(patience=0.2)
        redis.start()

        async def delivers() -> bool:
            return bool(await layer.hub_delivers(patience=1))

        # channels-redis' subscriber reconnects and re-subscribes the hub on its own.
        await eventually(delivers)
        await sync_to_async(layer.publish_to_groups)(
            [("user.1", {"type": "chat.frames", "frames": [{"back": True}]})]
        )
        got = await asyncio.wait_for(layer.receive(channel), PATIENCE_S)
        assert got["frames"] == [{"back": True}]
    finally:
        await layer.flush()
        redis.stop()


@override_settings(CHAT_FANOUT_HUB=False)
async def test_with_the_hub_off_frames_take_the_per_group_path() -> None:
    alice, bob = await database_sync_to_async(lambda: [make_user("alice"), make_user("bob")])()
    room = await database_sync_to_async(make_room)("general", [alice, bob])
    clients = []
    try:
        a, _ = await connect_user(alice)
        b, _ = await connect_user(bob)
        clients = [a, b]
        assert get_channel_layer()._get_layer().hub is None
        await a.request(
            {"type": "send-message", "roomId": room.pk, "message": "hi", "clientMessageId": "1"},
            "message-sent",
        )
        updated = await b.receive_type("chat-room-updated")
        total = await b.receive_type("total-unread-count-updated")
        assert (updated["unreadCount"], total["totalUnreadCount"]) == (1, 1)
        assert get_channel_layer()._get_layer().hub is None
    finally:
        await close_quietly(clients)


def _build_greeting(shared: dict[str, Any], row: list[Any]) -> dict[str, Any]:
    name, count = row
    return {"type": "chat.frames", "frames": [{"to": name, "count": count, **shared}]}


@pytest.mark.parametrize("through_hub", [True, False])
async def test_built_messages_are_built_for_each_member_of_each_row(
    through_hub: bool, caplog: Any
) -> None:
    """`publish_built`: the shared part once and a row per group; each member gets what the
    builder makes of them, with the hub (built where received) or without (built at once)."""
    register_builder("test.greeting", _build_greeting)
    layer = get_channel_layer()
    channels = {index: [await layer.new_channel(), await layer.new_channel()] for index in (1, 2)}
    for index, pair in channels.items():
        for channel in pair:
            await layer.group_add(f"user.{index}", channel)
    try:
        with override_settings(CHAT_FANOUT_HUB=through_hub):
            rows = [("user.1", ["ann", 3]), ("user.2", ["bo", 5]), ("user.9", ["nobody", 0])]
            await sync_to_async(fanout.publish_built)("test.greeting", {"room": 7}, rows)
            for index, name, count in [(1, "ann", 3), (2, "bo", 5)]:
                for channel in channels[index]:
                    got = await asyncio.wait_for(layer.receive(channel), PATIENCE_S)
                    assert got["frames"] == [{"to": name, "count": count, "room": 7}]
            # A builder this process does not know: nothing is delivered, and it says so.
            await sync_to_async(fanout.publish_built)("test.unknown", {}, [("user.1", [])])
            if through_hub:
                await eventually(lambda: "no builder 'test.unknown'" in caplog.text)
                assert layer.connection_queue(channels[1][0]).empty()
            else:
                assert "could not publish" in caplog.text
    finally:
        for index, pair in channels.items():
            for channel in pair:
                await layer.group_discard(f"user.{index}", channel)
