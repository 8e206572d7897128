"""Live connections converge on their own when Redis is emptied under them (chat.live)."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chat import live, presence
from chat.models import Message
from chat.tests.helpers import close_quietly, connect_user, eventually, make_room, make_user
from chatproject import lanes
from chatproject.redis_client import prefixed, redis_connection

pytestmark = pytest.mark.django_db(transaction=True)


def _delete_this_runs_keys() -> None:
    # What a FLUSHDB or a restart of a Redis that keeps nothing does to this run's keys,
    # without touching anyone else's.
    redis = redis_connection()
    keys = list(redis.scan_iter(match=prefixed("*"), count=1000))
    if keys:
        redis.delete(*keys)


async def test_emptied_redis_resends_snapshots_and_presence() -> None:
    alice, bob = await database_sync_to_async(lambda: [make_user("alice"), make_user("bob")])()
    room = await database_sync_to_async(make_room)("r", [alice, bob])
    reader, _ = await connect_user(alice)
    viewer, _ = await connect_user(bob)
    clients = [reader, viewer]
    try:
        await viewer.request({"type": "join-room", "roomId": room.pk}, "joined-room")
        assert len(live.live_connections()) == 2
        # Saved behind Redis' back: no event, so only a resync can tell the reader.
        await database_sync_to_async(
            lambda: Message.objects.bulk_create(
                [
                    Message(room=room, sender=bob, body="x", client_message_id=f"m{i}")
                    for i in range(3)
                ]
            )
        )()
        await database_sync_to_async(lanes.flush)(5)
        await sync_to_async(_delete_this_runs_keys)()

        snapshot = await reader.receive_type("unread-state", timeout=10)
        assert snapshot["totalUnreadCount"] == 3
        assert snapshot["rooms"] == [
            {
                "roomId": room.pk,
                "unreadCount": 3,
                "lastMessageId": snapshot["rooms"][0]["lastMessageId"],
            }
        ]
        await viewer.receive_type("unread-state", timeout=10)
        # The viewer's presence is back: its room counts as viewed again.
        await eventually(lambda: bob.pk in presence.viewer_ids(room.pk), seconds=5)
    finally:
        await close_quietly(clients)
    # No listener leaks: the registry is empty and the loop's watch has stopped.
    await eventually(lambda: not live.live_connections(), seconds=2)
    state = live._loops[asyncio.get_running_loop()]
    assert state.watch_task is None
