"""A new message in a room larger than one step (`_MEMBERS_PER_STEP`): counted in several Lua
calls and publishes, every member still gets its frames once, with the database's counts."""

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from badges import services as badge_services
from badges.selectors import unread_counts_from_db
from chat import services
from chat.events import user_group
from chat.tests.helpers import PATIENCE_S, make_room, make_user
from chatproject import lanes

pytestmark = pytest.mark.django_db(transaction=True)


async def test_every_member_of_a_room_counted_in_steps_gets_one_badge(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(badge_services, "_MEMBERS_PER_STEP", 3)
    people = [await sync_to_async(make_user)(f"step{i}") for i in range(8)]
    room = await sync_to_async(make_room)("steps", people)
    layer = get_channel_layer()
    channels = {}
    for person in people[1:]:
        channels[person.pk] = await layer.new_channel()
        await layer.group_add(user_group(person.pk), channels[person.pk])
    try:
        sent = await sync_to_async(services.message_send)(
            sender_id=people[0].pk, room_id=room.pk, body="hello", client_message_id="s1"
        )
        assert await sync_to_async(lanes.flush)()
        for person in people[1:]:
            got = await asyncio.wait_for(layer.receive(channels[person.pk]), PATIENCE_S)
            room_update, total = got["frames"]
            assert room_update["type"] == "chat-room-updated"
            assert room_update["lastMessage"]["id"] == sent.message.pk
            assert room_update["unreadCount"] == total["roomUnreadCount"] == 1
            assert total["totalUnreadCount"] == 1
            truth = await sync_to_async(unread_counts_from_db)(person.pk)
            assert truth[room.pk][1] == 1
            queue = layer.connection_queue(channels[person.pk])
            assert queue is not None and queue.empty()  # one message each, no more
    finally:
        for person_id, channel in channels.items():
            await layer.group_discard(user_group(person_id), channel)
