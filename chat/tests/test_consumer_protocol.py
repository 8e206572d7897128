"""The WebSocket protocol of shared/PROTOCOL.md, frame by frame, against a real Redis."""

import asyncio
import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import transaction

from chat.models import Membership, Message, Room
from chat.tests.helpers import (
    PATIENCE_S,
    Client,
    connect_user,
    make_room,
    make_user,
)
from chatproject import lanes

pytestmark = pytest.mark.django_db(transaction=True)

Frame = dict[str, Any]
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
QUIET = 0.2  # seconds of silence that stand for "no frame is coming"

# A snapshot's room with nothing unread, at the default level (shared/PROTOCOL.md).
NOTHING_UNREAD = {"unreadCount": 0, "mentionCount": 0, "level": "all", "lastMessageId": 0}


class Inbox(Client):
    """A client whose frames wait, in order, until a test asks for their type.

    Live frames of one change travel by several routes (the reply, the room group, the user
    group), so their order is not part of the protocol; a frame skipped while waiting for
    another stays available, and `nothing_more` is true only when none is left over.
    """

    def __init__(self, client: Client) -> None:
        super().__init__(client.communicator)
        self.frames = client.frames
        self.pending: list[Frame] = []

    async def receive_type(self, frame_type: str, timeout: float = PATIENCE_S) -> Frame:
        for index, frame in enumerate(self.pending):
            if frame["type"] == frame_type:
                return self.pending.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(timeout=max(0.01, deadline - loop.time()))
            if frame["type"] == frame_type:
                return frame
            assert frame["type"] != "error", frame
            self.pending.append(frame)

    async def nothing_more(self, timeout: float = QUIET) -> bool:
        assert not self.pending, f"frames left over: {self.pending}"
        return await super().nothing_more(timeout)


class Connections:
    """Opens clients for a test and closes them after it, pass or fail."""

    def __init__(self) -> None:
        self.clients: list[Inbox] = []

    async def open(self, user: Any) -> tuple[Inbox, Frame]:
        # The snapshot is read from the counters, which the badge lane updates just after each
        # commit; a test that compares it with what it sent waits for the lanes first (a real
        # client converges anyway: the lane's update follows with a higher version).
        assert await sync_to_async(lanes.flush)(PATIENCE_S), "receiver lanes did not drain"
        client, snapshot = await connect_user(user)
        inbox = Inbox(client)
        self.clients.append(inbox)
        return inbox, snapshot


async def users(*names: str) -> list[Any]:
    return [await database_sync_to_async(make_user)(name) for name in names]


async def room_of(name: str, members: list[Any]) -> Room:
    return await database_sync_to_async(make_room)(name, members)


async def reply(client: Inbox, frame: Frame, reply_type: str) -> Frame:
    """Send a frame and return its reply; an error frame fails the test at once."""
    await client.send(frame)
    return await client.receive_type(reply_type)


async def send(client: Inbox, room: Room, body: str, client_message_id: str) -> Frame:
    frame = {
        "type": "send-message",
        "roomId": room.pk,
        "message": body,
        "clientMessageId": client_message_id,
    }
    return await reply(client, frame, "message-sent")


async def gather(client: Inbox, *types: str) -> dict[str, Frame]:
    """The next frame of each type, whatever order they arrive in."""
    return {frame_type: await client.receive_type(frame_type) for frame_type in types}


async def badge(client: Inbox) -> Frame:
    return await client.receive_type("total-unread-count-updated")


@database_sync_to_async
def message_count(**filters: Any) -> int:
    return Message.objects.filter(**filters).count()


@database_sync_to_async
def read_pointer(user: Any, room: Room) -> int:
    return Membership.objects.get(user=user, room=room).last_read_message_id


def room_entry(snapshot: Frame, room: Room) -> Frame:
    (entry,) = [entry for entry in snapshot["rooms"] if entry["roomId"] == room.pk]
    return entry


# --- snapshot ------------------------------------------------------------------------------


async def test_snapshot_is_the_first_frame_and_lists_rooms(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    quiet = await room_of("quiet", [bob])
    await room_of("elsewhere", [alice])

    _, snapshot = await ws.open(bob)

    assert set(snapshot) == {"type", "totalUnreadCount", "totalMentionCount", "version", "rooms"}
    assert snapshot["type"] == "unread-state"
    assert snapshot["totalUnreadCount"] == 0
    assert isinstance(snapshot["version"], int)
    assert sorted(snapshot["rooms"], key=lambda entry: entry["roomId"]) == [
        {**NOTHING_UNREAD, "roomId": general.pk},
        {**NOTHING_UNREAD, "roomId": quiet.pk},
    ]


async def test_snapshot_shows_unread_counts_and_last_message_ids(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    random = await room_of("random", [alice, bob])
    quiet = await room_of("quiet", [alice, bob])
    a, _ = await ws.open(alice)
    await send(a, general, "one", "g1")
    last_general = await send(a, general, "two", "g2")
    last_random = await send(a, random, "three", "r1")

    _, snapshot = await ws.open(bob)

    assert snapshot["totalUnreadCount"] == 3
    assert room_entry(snapshot, general) == {
        **NOTHING_UNREAD,
        "roomId": general.pk,
        "unreadCount": 2,
        "lastMessageId": last_general["messageId"],
    }
    assert room_entry(snapshot, random) == {
        **NOTHING_UNREAD,
        "roomId": random.pk,
        "unreadCount": 1,
        "lastMessageId": last_random["messageId"],
    }
    assert room_entry(snapshot, quiet) == {**NOTHING_UNREAD, "roomId": quiet.pk}


# --- join / leave --------------------------------------------------------------------------


async def test_join_room_reply_and_other_rooms_stay_unread(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    random = await room_of("random", [alice, bob])
    a, _ = await ws.open(alice)
    await send(a, general, "one", "g1")
    await send(a, general, "two", "g2")
    await send(a, random, "three", "r1")
    b, snapshot = await ws.open(bob)
    assert snapshot["totalUnreadCount"] == 3

    joined = await reply(b, {"type": "join-room", "roomId": general.pk}, "joined-room")

    assert joined == {
        "type": "joined-room",
        "roomId": general.pk,
        "unreadCount": 0,
        "totalUnreadCount": 1,
        "totalMentionCount": 0,
    }
    _, again = await ws.open(bob)
    assert again["totalUnreadCount"] == 1
    assert room_entry(again, general)["unreadCount"] == 0
    assert room_entry(again, random)["unreadCount"] == 1


async def test_leave_room_reply_and_later_messages_count_again(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    b, _ = await ws.open(bob)
    await reply(b, {"type": "join-room", "roomId": general.pk}, "joined-room")
    seen = await send(a, general, "while viewing", "c1")
    viewing = await gather(b, "chat-message", "chat-room-updated")
    assert viewing["chat-message"]["message"]["id"] == seen["messageId"]

    left = await reply(b, {"type": "leave-room", "roomId": general.pk}, "left-room")
    assert left == {"type": "left-room", "roomId": general.pk}

    unseen = await send(a, general, "after leaving", "c2")
    frames = await gather(b, "chat-room-updated", "total-unread-count-updated")
    assert frames["chat-room-updated"]["unreadCount"] == 1
    assert frames["total-unread-count-updated"]["totalUnreadCount"] == 1
    assert frames["total-unread-count-updated"]["roomUnreadCount"] == 1
    # The room's count is the state of that version (the page orders it against snapshots).
    version = frames["total-unread-count-updated"]["version"]
    assert frames["chat-room-updated"]["version"] == version
    assert await b.nothing_more(QUIET), "a connection that left the room still gets its messages"
    viewed = [frame["message"]["id"] for frame in b.frames if frame["type"] == "chat-message"]
    assert viewed == [seen["messageId"]]
    assert await read_pointer(bob, general) == seen["messageId"] < unseen["messageId"]


async def test_join_room_on_one_device_updates_the_others(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    phone, _ = await ws.open(bob)
    laptop, _ = await ws.open(bob)
    await send(a, general, "one", "c1")
    await send(a, general, "two", "c2")
    counted = [await badge(laptop) for _ in range(2)]

    await reply(phone, {"type": "join-room", "roomId": general.pk}, "joined-room")

    pushed = await badge(laptop)
    assert (pushed["roomId"], pushed["roomUnreadCount"], pushed["totalUnreadCount"]) == (
        general.pk,
        0,
        0,
    )
    assert pushed["version"] > counted[-1]["version"]


async def test_a_room_stays_viewed_while_any_connection_views_it(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    phone, _ = await ws.open(bob)
    laptop, _ = await ws.open(bob)
    for client in (phone, laptop):
        await reply(client, {"type": "join-room", "roomId": general.pk}, "joined-room")
    await reply(phone, {"type": "leave-room", "roomId": general.pk}, "left-room")

    sent = await send(a, general, "laptop sees this", "c1")

    assert (await laptop.receive_type("chat-message"))["message"]["id"] == sent["messageId"]
    assert (await phone.receive_type("chat-room-updated"))["unreadCount"] == 0
    assert await phone.nothing_more(QUIET)
    assert await read_pointer(bob, general) == sent["messageId"]


async def test_closing_a_viewing_connection_stops_viewing(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    phone, _ = await ws.open(bob)
    laptop, _ = await ws.open(bob)
    await reply(laptop, {"type": "join-room", "roomId": general.pk}, "joined-room")

    await laptop.close()
    await send(a, general, "nobody is looking", "c1")

    counted = await gather(phone, "chat-room-updated", "total-unread-count-updated")
    assert counted["chat-room-updated"]["unreadCount"] == 1
    assert counted["total-unread-count-updated"]["totalUnreadCount"] == 1
    assert await read_pointer(bob, general) == 0


# --- send-message --------------------------------------------------------------------------


async def test_send_message_reply(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)

    sent = await send(a, general, "hello", "c-1")

    assert set(sent) == {"type", "roomId", "clientMessageId", "messageId", "createdAt"}
    assert sent["type"] == "message-sent"
    assert sent["roomId"] == general.pk
    assert sent["clientMessageId"] == "c-1"
    saved = await database_sync_to_async(Message.objects.get)(pk=sent["messageId"])
    assert (saved.room_id, saved.sender_id, saved.body) == (general.pk, alice.pk, "hello")
    assert ISO_UTC.match(sent["createdAt"]), sent["createdAt"]
    created = datetime.fromisoformat(sent["createdAt"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(seconds=30)
    assert created == saved.created_at


async def test_repeated_client_message_id_saves_once_and_counts_once(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    b, _ = await ws.open(bob)
    first = await send(a, general, "hello", "same-id")
    counted = await gather(b, "chat-room-updated", "total-unread-count-updated")
    assert counted["total-unread-count-updated"]["totalUnreadCount"] == 1
    assert await b.nothing_more(QUIET)

    repeat = await send(a, general, "hello", "same-id")

    assert repeat == first
    assert await message_count(room=general) == 1
    assert await b.nothing_more(QUIET), "a repeated send moved the recipient again"
    _, snapshot = await ws.open(bob)
    assert snapshot["totalUnreadCount"] == 1
    # The next new message is the second unread, not the third.
    await send(a, general, "again", "next-id")
    assert (await badge(b))["totalUnreadCount"] == 2


# --- live frames ---------------------------------------------------------------------------


async def test_chat_message_goes_to_viewing_connections_only(ws: Connections) -> None:
    alice, bob, carol = await users("alice", "bob", "carol")
    general = await room_of("general", [alice, bob, carol])
    a, _ = await ws.open(alice)
    b_viewing, _ = await ws.open(bob)
    b_elsewhere, _ = await ws.open(bob)
    c, _ = await ws.open(carol)
    for viewer in (a, b_viewing):
        await reply(viewer, {"type": "join-room", "roomId": general.pk}, "joined-room")

    sent = await send(a, general, "hi all", "c1")

    expected = {
        "type": "chat-message",
        "roomId": general.pk,
        "message": {
            "id": sent["messageId"],
            "senderId": alice.pk,
            "body": "hi all",
            "createdAt": sent["createdAt"],
        },
    }
    assert await a.receive_type("chat-message") == expected
    assert await b_viewing.receive_type("chat-message") == expected
    await c.receive_type("total-unread-count-updated")
    for outsider in (b_elsewhere, c):
        await outsider.receive_type("chat-room-updated")
        assert await outsider.nothing_more(QUIET)
        assert "chat-message" not in [frame["type"] for frame in outsider.frames]


async def test_chat_room_updated_goes_to_every_connection_of_every_member(
    ws: Connections,
) -> None:
    alice, bob, carol, dave = await users("alice", "bob", "carol", "dave")
    general = await room_of("general", [alice, bob, carol])
    await room_of("other", [dave])
    a, _ = await ws.open(alice)
    b_viewing, _ = await ws.open(bob)
    b_elsewhere, _ = await ws.open(bob)
    c, _ = await ws.open(carol)
    d, _ = await ws.open(dave)
    for viewer in (a, b_viewing):
        await reply(viewer, {"type": "join-room", "roomId": general.pk}, "joined-room")

    sent = await send(a, general, "news", "c1")

    last_message = {
        "id": sent["messageId"],
        "senderId": alice.pk,
        "body": "news",
        "createdAt": sent["createdAt"],
    }
    for client, unread in ((a, 0), (b_viewing, 0), (b_elsewhere, 0), (c, 1)):
        updated = await client.receive_type("chat-room-updated")
        version = updated.pop("version")
        assert updated == {
            "type": "chat-room-updated",
            "roomId": general.pk,
            "lastMessage": last_message,
            "unreadCount": unread,
            "mentionCount": 0,
        }
        assert isinstance(version, int) and version > 0
    assert await d.nothing_more(QUIET), "a non-member got the room's frames"


async def test_total_unread_count_updated_reaches_every_connection(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    phone, phone_snapshot = await ws.open(bob)
    laptop, laptop_snapshot = await ws.open(bob)

    for n in (1, 2, 3):
        await send(a, general, f"message {n}", f"c{n}")
    for client, snapshot in ((phone, phone_snapshot), (laptop, laptop_snapshot)):
        badges = [await badge(client) for _ in range(3)]
        assert [frame["totalUnreadCount"] for frame in badges] == [1, 2, 3]
        assert [frame["roomUnreadCount"] for frame in badges] == [1, 2, 3]
        assert {frame["roomId"] for frame in badges} == {general.pk}
        assert all(
            set(frame)
            == {
                "type",
                "totalUnreadCount",
                "totalMentionCount",
                "roomId",
                "roomUnreadCount",
                "roomMentionCount",
                "version",
            }
            for frame in badges
        )
        versions = [snapshot["version"]] + [frame["version"] for frame in badges]
        assert versions == sorted(set(versions)), f"versions do not grow: {versions}"


# --- counting rules ------------------------------------------------------------------------


async def test_n_messages_make_n_unread_and_none_for_the_sender(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    b, _ = await ws.open(bob)

    for n in range(5):
        await send(a, general, f"message {n}", f"c{n}")

    assert [(await badge(b))["totalUnreadCount"] for _ in range(5)] == [1, 2, 3, 4, 5]
    _, bob_again = await ws.open(bob)
    assert bob_again["totalUnreadCount"] == 5
    assert room_entry(bob_again, general)["unreadCount"] == 5
    # The sender's own messages never count for her, live or in a snapshot.
    updates = [await a.receive_type("chat-room-updated") for _ in range(5)]
    assert [update["unreadCount"] for update in updates] == [0] * 5
    assert await a.nothing_more(QUIET)
    assert "total-unread-count-updated" not in [frame["type"] for frame in a.frames]
    _, alice_again = await ws.open(alice)
    assert alice_again["totalUnreadCount"] == 0
    assert room_entry(alice_again, general)["unreadCount"] == 0


async def test_message_while_viewing_counts_as_read(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    b, _ = await ws.open(bob)
    await reply(b, {"type": "join-room", "roomId": general.pk}, "joined-room")

    sent = await send(a, general, "you are here", "c1")

    frames = await gather(b, "chat-message", "chat-room-updated")
    assert frames["chat-room-updated"]["unreadCount"] == 0
    assert await b.nothing_more(QUIET)
    assert "total-unread-count-updated" not in [frame["type"] for frame in b.frames]
    assert await read_pointer(bob, general) == sent["messageId"]
    _, snapshot = await ws.open(bob)
    assert snapshot["totalUnreadCount"] == 0
    assert room_entry(snapshot, general)["unreadCount"] == 0


# --- mark-read -----------------------------------------------------------------------------


async def test_mark_read_moves_forward_only(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    random = await room_of("random", [alice, bob])
    a, _ = await ws.open(alice)
    b, _ = await ws.open(bob)
    ids = [(await send(a, general, f"m{n}", f"g{n}"))["messageId"] for n in range(3)]
    await send(a, random, "elsewhere", "r1")
    counted = [await badge(b) for _ in range(4)]
    assert [frame["totalUnreadCount"] for frame in counted] == [1, 2, 3, 4]

    read = await reply(
        b,
        {"type": "mark-read", "roomId": general.pk, "messageId": ids[1]},
        "total-unread-count-updated",
    )

    assert read["roomId"] == general.pk
    assert read["roomUnreadCount"] == 1
    assert read["totalUnreadCount"] == 2
    assert read["version"] > counted[-1]["version"]
    assert await read_pointer(bob, general) == ids[1]

    older = await reply(
        b,
        {"type": "mark-read", "roomId": general.pk, "messageId": ids[0]},
        "total-unread-count-updated",
    )

    assert older["roomId"] == general.pk
    assert older["roomUnreadCount"] == 1
    assert older["totalUnreadCount"] == 2
    assert older["version"] >= read["version"]
    assert await read_pointer(bob, general) == ids[1]
    _, snapshot = await ws.open(bob)
    assert room_entry(snapshot, general)["unreadCount"] == 1
    assert snapshot["totalUnreadCount"] == 2


async def test_mark_read_on_one_device_updates_the_others(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    phone, _ = await ws.open(bob)
    laptop, _ = await ws.open(bob)
    ids = [(await send(a, general, f"m{n}", f"c{n}"))["messageId"] for n in range(3)]
    for client in (phone, laptop):
        badges = [await badge(client) for _ in range(3)]
        assert [frame["totalUnreadCount"] for frame in badges] == [1, 2, 3]
    before = badges[-1]["version"]

    read = await reply(
        phone,
        {"type": "mark-read", "roomId": general.pk, "messageId": ids[1]},
        "total-unread-count-updated",
    )

    pushed = await badge(laptop)
    assert pushed["totalUnreadCount"] == read["totalUnreadCount"] == 1
    assert pushed["roomUnreadCount"] == 1
    assert pushed["roomId"] == general.pk
    assert pushed["version"] > before


# --- changes outside the consumer ----------------------------------------------------------


async def test_rolled_back_message_changes_no_count(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    b, _ = await ws.open(bob)

    class Abort(Exception):
        pass

    @database_sync_to_async
    def save_then_roll_back() -> None:
        with pytest.raises(Abort), transaction.atomic():
            Message.objects.create(room=general, sender=alice, body="never")
            raise Abort

    await save_then_roll_back()

    assert await b.nothing_more(QUIET), "a rolled-back message reached the recipient"
    assert await message_count() == 0
    _, snapshot = await ws.open(bob)
    assert snapshot["totalUnreadCount"] == 0
    assert room_entry(snapshot, general) == {**NOTHING_UNREAD, "roomId": general.pk}


async def test_rolled_back_message_does_not_reach_or_move_a_viewer(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    b, _ = await ws.open(bob)
    await reply(b, {"type": "join-room", "roomId": general.pk}, "joined-room")

    @database_sync_to_async
    def save_then_roll_back() -> None:
        with contextlib.suppress(RuntimeError), transaction.atomic():
            Message.objects.create(room=general, sender=alice, body="never")
            raise RuntimeError("roll back")

    await save_then_roll_back()

    assert await b.nothing_more(QUIET), "a rolled-back message reached a viewer"
    assert await read_pointer(bob, general) == 0
    assert await message_count() == 0


async def test_message_saved_through_the_orm_moves_the_badge(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    general = await room_of("general", [alice, bob])
    b, _ = await ws.open(bob)

    message = await database_sync_to_async(Message.objects.create)(
        room=general, sender=alice, body="from the shell"
    )

    frames = await gather(b, "chat-room-updated", "total-unread-count-updated")
    assert frames["chat-room-updated"]["lastMessage"]["id"] == message.pk
    assert frames["chat-room-updated"]["unreadCount"] == 1
    assert frames["total-unread-count-updated"]["totalUnreadCount"] == 1
    assert frames["total-unread-count-updated"]["roomUnreadCount"] == 1
    _, snapshot = await ws.open(bob)
    assert room_entry(snapshot, general) == {
        **NOTHING_UNREAD,
        "roomId": general.pk,
        "unreadCount": 1,
        "lastMessageId": message.pk,
    }


# --- ping ----------------------------------------------------------------------------------


async def test_ping_pong(ws: Connections) -> None:
    (alice,) = await users("alice")
    a, _ = await ws.open(alice)

    await a.send({"type": "ping"})

    assert await a.receive() == {"type": "pong"}
    assert await a.nothing_more(QUIET)
