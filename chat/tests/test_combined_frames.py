"""`?frames=combined` (docs/protocol-extensions.md, "Fewer frames"): a room update and the total
that follows it arrive as one frame; without the parameter the contract's two frames."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chat.consumers import combine_frames
from chat.services import message_send
from chat.tests.helpers import close_quietly, connect_user, make_room, make_user
from chatproject import lanes

pytestmark = pytest.mark.django_db(transaction=True)


def _send(sender: Any, room: Any, body: str, key: str) -> int:
    return message_send(
        sender_id=sender.pk, room_id=room.pk, body=body, client_message_id=key
    ).message.pk


async def test_a_combined_connection_gets_one_frame_per_message_with_the_total() -> None:
    alice = await database_sync_to_async(make_user)("alice")
    bob = await database_sync_to_async(make_user)("bob")
    room = await database_sync_to_async(make_room)("general", [alice, bob])
    combined, snapshot = await connect_user(bob, query="frames=combined")
    plain, _ = await connect_user(bob)
    try:
        message_id = await database_sync_to_async(_send)(alice, room, "hello", "c1")
        frame = await combined.receive()
        assert frame["type"] == "chat-room-updated"
        assert frame["combines"] == ["chat-room-updated", "total-unread-count-updated"]
        assert frame["roomId"] == room.pk
        assert frame["lastMessage"]["id"] == message_id
        assert (frame["unreadCount"], frame["roomUnreadCount"], frame["totalUnreadCount"]) == (
            1,
            1,
            1,
        )
        assert frame["version"] > snapshot["version"]
        # The other device of the same user, without the parameter: the contract's two frames.
        first, second = await plain.receive(), await plain.receive()
        assert {first["type"], second["type"]} == {
            "chat-room-updated",
            "total-unread-count-updated",
        }
        assert "combines" not in first and "combines" not in second
        assert await sync_to_async(lanes.flush)(30)
        assert await combined.nothing_more()
    finally:
        await close_quietly([combined, plain])


def test_only_a_room_update_followed_by_its_own_rooms_total_is_combined() -> None:
    room_1 = {"type": "chat-room-updated", "roomId": 1, "unreadCount": 2, "version": 5}
    total_1 = {
        "type": "total-unread-count-updated",
        "roomId": 1,
        "roomUnreadCount": 2,
        "totalUnreadCount": 3,
        "version": 6,
    }
    total_2 = {**total_1, "roomId": 2, "version": 7}
    snapshot = {"type": "unread-state", "version": 8, "totalUnreadCount": 3, "rooms": []}

    assert combine_frames([room_1, total_1]) == [
        {
            "type": "chat-room-updated",
            "roomId": 1,
            "unreadCount": 2,
            "roomUnreadCount": 2,
            "totalUnreadCount": 3,
            "version": 6,
            "combines": ["chat-room-updated", "total-unread-count-updated"],
        }
    ]
    # Another room's total, a total on its own (its room update was stale), a snapshot: as is.
    assert combine_frames([room_1, total_2]) == [room_1, total_2]
    assert combine_frames([total_1]) == [total_1]
    assert combine_frames([room_1, snapshot]) == [room_1, snapshot]
    # Two messages in one delivery: two combined frames, never three frames into one.
    both = combine_frames([room_1, total_1, room_1, total_1])
    assert [frame["combines"] for frame in both] == [
        ["chat-room-updated", "total-unread-count-updated"]
    ] * 2
