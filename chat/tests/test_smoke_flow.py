import pytest
from channels.db import database_sync_to_async

from chat.tests.helpers import connect_user, make_room, make_user

pytestmark = pytest.mark.django_db(transaction=True)


async def test_message_moves_recipient_badge() -> None:
    alice = await database_sync_to_async(make_user)("alice")
    bob = await database_sync_to_async(make_user)("bob")
    room = await database_sync_to_async(make_room)("general", [alice, bob])
    a, _ = await connect_user(alice)
    b, snapshot = await connect_user(bob)
    assert snapshot["totalUnreadCount"] == 0
    sent = await a.request(
        {"type": "send-message", "roomId": room.pk, "message": "hi", "clientMessageId": "c1"},
        "message-sent",
    )
    badge = await b.receive_type("total-unread-count-updated")
    assert badge["totalUnreadCount"] == 1
    assert badge["roomUnreadCount"] == 1
    assert badge["version"] > snapshot["version"]
    joined = await b.request({"type": "join-room", "roomId": room.pk}, "joined-room")
    assert joined == {
        "type": "joined-room",
        "roomId": room.pk,
        "unreadCount": 0,
        "totalUnreadCount": 0,
        "totalMentionCount": 0,
    }
    assert sent["messageId"] > 0
    await a.close()
    await b.close()
