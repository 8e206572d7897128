"""Delete, mark unread and leave (shared/PROTOCOL.md, "Badges as chat products define them"):
over HTTP and the WebSocket, with every device of the member told at once."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from chat.models import Membership, Message, Room
from chat.tests.helpers import token_for
from chat.tests.test_consumer_protocol import (
    Connections,
    Frame,
    Inbox,
    badge,
    read_pointer,
    reply,
    room_of,
    send,
    users,
)
from chat.tests.test_http import assert_error, post_json
from chat.unread import unread_state
from chatproject import lanes

pytestmark = pytest.mark.django_db(transaction=True)


def http(method: str, url: str, user: Any, payload: Any = None) -> Any:
    token = token_for(user)
    if method == "POST":
        return post_json(Client(), url, payload, token)
    return Client().generic(method, url, headers={"Authorization": f"Bearer {token}"})


async def call(method: str, url: str, user: Any, payload: Any = None) -> Any:
    return await sync_to_async(http)(method, url, user, payload)


async def snapshot_after(client: Inbox, check: Any) -> Frame:
    """The next `unread-state` for which `check(frame)` holds (a resync may come twice)."""
    while True:
        frame = await client.receive_type("unread-state")
        if check(frame):
            return frame


def room_count(frame: Frame, room: Room) -> int | None:
    counts = {entry["roomId"]: entry["unreadCount"] for entry in frame["rooms"]}
    return counts.get(room.pk)


async def drained() -> None:
    assert await sync_to_async(lanes.flush)(30), "receiver lanes did not drain"


# --- delete ----------------------------------------------------------------------------------


async def test_delete_drops_the_count_on_every_device_and_tells_viewers(
    ws: Connections,
) -> None:
    alice, bob = await users("alice", "bob")
    room = await room_of("general", [alice, bob])
    sender, _ = await ws.open(alice)
    await reply(sender, {"type": "join-room", "roomId": room.pk}, "joined-room")
    await send(sender, room, "one", "c1")
    second = await send(sender, room, "two", "c2")
    phone, _ = await ws.open(bob)
    laptop, snapshot = await ws.open(bob)
    assert room_count(snapshot, room) == 2

    response = await call("DELETE", f"/api/rooms/{room.pk}/messages/{second['messageId']}", alice)

    assert response.status_code == 204
    for device in (phone, laptop):
        fresh = await snapshot_after(device, lambda frame: room_count(frame, room) == 1)
        assert fresh["totalUnreadCount"] == 1
        assert fresh["version"] > snapshot["version"]
    deleted = await sender.receive_type("chat-message-deleted")
    assert deleted == {
        "type": "chat-message-deleted",
        "roomId": room.pk,
        "messageId": second["messageId"],
    }
    state = await database_sync_to_async(unread_state)(bob.pk)
    assert state["totalUnreadCount"] == 1


async def test_delete_is_for_the_sender_or_staff_and_happens_once(ws: Connections) -> None:
    alice, bob, carol = await users("alice", "bob", "carol")
    room = await room_of("general", [alice, bob])
    sender, _ = await ws.open(alice)
    sent = await send(sender, room, "mine", "c1")
    url = f"/api/rooms/{room.pk}/messages/{sent['messageId']}"

    assert_error(await call("DELETE", url, bob), 403, "not_allowed")
    assert_error(await call("DELETE", url, carol), 403, "not_a_member")
    assert_error(await call("POST", url, alice, {}), 405, "method_not_allowed")
    other = await room_of("other", [alice])
    assert_error(
        await call("DELETE", f"/api/rooms/{other.pk}/messages/{sent['messageId']}", alice),
        404,
        "not_found",
    )

    await database_sync_to_async(get_user_model().objects.filter(pk=carol.pk).update)(is_staff=True)
    assert (await call("DELETE", url, carol)).status_code == 204
    assert_error(await call("DELETE", url, alice), 404, "not_found")
    assert not await database_sync_to_async(Message.objects.filter(pk=sent["messageId"]).exists)()
    await drained()


async def test_a_deleted_message_that_was_read_changes_no_count(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    room = await room_of("general", [alice, bob])
    sender, _ = await ws.open(alice)
    first = await send(sender, room, "read", "c1")
    await send(sender, room, "unread", "c2")
    reader, _ = await ws.open(bob)
    await reply(
        reader,
        {"type": "mark-read", "roomId": room.pk, "messageId": first["messageId"]},
        "total-unread-count-updated",
    )

    response = await call("DELETE", f"/api/rooms/{room.pk}/messages/{first['messageId']}", alice)

    assert response.status_code == 204
    fresh = await snapshot_after(reader, lambda frame: True)
    assert room_count(fresh, room) == 1
    assert fresh["totalUnreadCount"] == 1


# --- mark unread -----------------------------------------------------------------------------


async def test_mark_unread_moves_the_pointer_back_on_every_device(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    room = await room_of("general", [alice, bob])
    sender, _ = await ws.open(alice)
    sent = [await send(sender, room, f"m{n}", f"c{n}") for n in range(4)]
    phone, _ = await ws.open(bob)
    laptop, _ = await ws.open(bob)
    await reply(phone, {"type": "join-room", "roomId": room.pk}, "joined-room")
    # Joining read the room: its update reaches every device through the user's group, in its
    # own time; taken here so the mark-unread reply below is the next update.
    assert (await badge(phone))["roomUnreadCount"] == 0
    await reply(phone, {"type": "leave-room", "roomId": room.pk}, "left-room")
    await drained()

    answer = await reply(
        phone,
        {"type": "mark-unread", "roomId": room.pk, "messageId": sent[1]["messageId"]},
        "total-unread-count-updated",
    )

    assert answer["roomId"] == room.pk
    assert answer["roomUnreadCount"] == 3  # the message and the two after it
    assert answer["totalUnreadCount"] == 3
    assert await read_pointer(bob, room) == sent[1]["messageId"] - 1
    fresh = await snapshot_after(laptop, lambda frame: room_count(frame, room) == 3)
    assert fresh["totalUnreadCount"] == 3


async def test_mark_unread_over_http_never_marks_anything_read(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    room = await room_of("general", [alice, bob])
    sender, _ = await ws.open(alice)
    sent = [await send(sender, room, f"m{n}", f"c{n}") for n in range(3)]
    await drained()

    # Nothing read yet: marking the newest unread leaves all three unread.
    response = await call(
        "POST", f"/api/rooms/{room.pk}/unread", bob, {"messageId": sent[2]["messageId"]}
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "roomId": room.pk,
        "unreadCount": 3,
        "mentionCount": 0,
        "totalUnreadCount": 3,
        "totalMentionCount": 0,
    }
    assert await read_pointer(bob, room) == 0


async def test_mark_unread_refusals() -> None:
    alice, bob, carol = await users("alice", "bob", "carol")
    room = await room_of("general", [alice, bob])
    other = await room_of("other", [alice, bob])
    message = await database_sync_to_async(Message.objects.create)(
        room=other, sender=alice, body="elsewhere", client_message_id="c1"
    )
    url = f"/api/rooms/{room.pk}/unread"

    assert_error(await call("POST", url, bob, {"messageId": message.pk}), 404, "not_found")
    assert_error(await call("POST", url, bob, {"messageId": "1"}), 400, "bad_request")
    assert_error(await call("POST", url, bob, {}), 400, "bad_request")
    assert_error(await call("POST", url, carol, {"messageId": message.pk}), 403, "not_a_member")
    await drained()


# --- leave -----------------------------------------------------------------------------------


async def test_leaving_takes_the_room_out_of_the_total_and_its_frames(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    room = await room_of("general", [alice, bob])
    kept = await room_of("kept", [alice, bob])
    sender, _ = await ws.open(alice)
    await send(sender, room, "in the room left", "c1")
    await send(sender, kept, "in the room kept", "c2")
    viewer, _ = await ws.open(bob)
    other_device, snapshot = await ws.open(bob)
    assert snapshot["totalUnreadCount"] == 2
    await reply(viewer, {"type": "join-room", "roomId": room.pk}, "joined-room")

    response = await call("DELETE", f"/api/rooms/{room.pk}/membership", bob)

    assert response.status_code == 204
    for device in (viewer, other_device):
        fresh = await snapshot_after(device, lambda frame: room_count(frame, room) is None)
        assert fresh["totalUnreadCount"] == 1
        assert room_count(fresh, kept) == 1
    assert not await database_sync_to_async(Membership.objects.filter(user=bob, room=room).exists)()
    # The viewer left the room's group: the next message there does not reach it.
    await send(sender, room, "after leaving", "c3")
    await drained()
    viewer.pending.clear()
    await viewer.nothing_more()
    assert not [
        frame
        for frame in viewer.frames
        if frame["type"] == "chat-message" and frame["message"]["body"] == "after leaving"
    ]
    assert_error(await call("DELETE", f"/api/rooms/{room.pk}/membership", bob), 403, "not_a_member")
    assert_error(await call("DELETE", "/api/rooms/999999/membership", bob), 404, "not_found")


async def test_staff_removing_a_member_has_the_same_effect(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    room = await room_of("general", [alice, bob])
    sender, _ = await ws.open(alice)
    await send(sender, room, "hello", "c1")
    device, snapshot = await ws.open(bob)
    assert snapshot["totalUnreadCount"] == 1

    await database_sync_to_async(Membership.objects.filter(user=bob, room=room).delete)()

    fresh = await snapshot_after(device, lambda frame: room_count(frame, room) is None)
    assert fresh["totalUnreadCount"] == 0
