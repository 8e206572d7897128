"""Live connections converge on their own when Redis is emptied under them (chat.live)."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chat import live, presence, services
from chat.models import Message
from chat.tests.helpers import (
    PATIENCE_S,
    close_quietly,
    connect_user,
    eventually,
    make_room,
    make_user,
)
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
        await database_sync_to_async(lanes.flush)(PATIENCE_S)
        await sync_to_async(_delete_this_runs_keys)()

        snapshot = await reader.receive_type("unread-state")
        assert snapshot["totalUnreadCount"] == 3
        assert snapshot["rooms"] == [
            {
                "roomId": room.pk,
                "unreadCount": 3,
                "mentionCount": 0,
                "level": "all",
                "lastMessageId": snapshot["rooms"][0]["lastMessageId"],
            }
        ]
        await viewer.receive_type("unread-state")
        # The viewer's presence is back: its room counts as viewed again.
        await eventually(lambda: bob.pk in presence.viewer_ids(room.pk))
    finally:
        await close_quietly(clients)
    # No listener leaks: the registry is empty and the loop's watch has stopped.
    await eventually(lambda: not live.live_connections())
    state = live._loops[asyncio.get_running_loop()]
    assert state.watch_task is None


async def test_the_snapshot_after_a_flush_outranks_every_version_sent_before() -> None:
    """Clients ignore versions below the last they applied: if versions restarted low after
    Redis was emptied, the fresh snapshot would be ignored and the page stay stale."""
    alice, bob = await database_sync_to_async(lambda: [make_user("alice"), make_user("bob")])()
    room = await database_sync_to_async(make_room)("r", [alice, bob])
    reader, first = await connect_user(alice)
    try:
        await database_sync_to_async(services.message_send)(
            sender_id=bob.pk, room_id=room.pk, body="before", client_message_id="b1"
        )
        update = await reader.receive_type("total-unread-count-updated")
        assert update["version"] > first["version"]
        await database_sync_to_async(
            lambda: Message.objects.create(room=room, sender=bob, body="x", client_message_id="b2")
        )()
        await database_sync_to_async(lanes.flush)(PATIENCE_S)
        await sync_to_async(_delete_this_runs_keys)()

        snapshot = await reader.receive_type("unread-state")
        assert snapshot["totalUnreadCount"] == 2
        assert snapshot["version"] > update["version"]
    finally:
        await close_quietly([reader])


async def test_a_resync_goes_through_the_slow_client_guard() -> None:
    """A connection being closed as slow gets no snapshot piled on what it has not read."""
    alice, bob = await database_sync_to_async(lambda: [make_user("alice"), make_user("bob")])()
    await database_sync_to_async(make_room)("r", [alice, bob])
    stalled, _ = await connect_user(alice)
    reading, _ = await connect_user(bob)
    try:
        for connection in live.live_connections():
            if connection.user_id == alice.pk:
                guard = connection.slow_guard  # type: ignore[attr-defined]
                guard.closing = True
        await sync_to_async(_delete_this_runs_keys)()
        await reading.receive_type("unread-state")
        assert await stalled.nothing_more(timeout=0.5)
    finally:
        await close_quietly([stalled, reading])
