"""Mentions, notification levels and edits (shared/PROTOCOL.md, "Badges as chat products define
them"): what each count is, on every device, and the endpoints' answers and refusals."""

import json
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from badges import counters
from chat.mentions import mentions_in, names_after_at
from chat.models import Membership, Message, MessageMention
from chat.tests.helpers import make_room, make_user, token_for
from chat.tests.test_consumer_protocol import (
    Connections,
    Frame,
    Inbox,
    badge,
    reply,
    room_entry,
    room_of,
    send,
    users,
)
from chat.tests.test_http import assert_error
from chat.unread import room_badge
from chatproject import lanes
from chatproject.redis_client import redis_connection


def http(method: str, url: str, user: Any, payload: Any = None) -> Any:
    return Client().generic(
        method,
        url,
        json.dumps(payload) if payload is not None else "",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token_for(user)}"},
    )


async def call(method: str, url: str, user: Any, payload: Any = None) -> Any:
    return await sync_to_async(http)(method, url, user, payload)


async def drained() -> None:
    assert await sync_to_async(lanes.flush)(30), "receiver lanes did not drain"


async def badge_where(client: Inbox, check: Any) -> Frame:
    """The next `total-unread-count-updated` for which `check(frame)` holds."""
    while True:
        frame = await badge(client)
        if check(frame):
            return frame


def counts(frame: Frame) -> tuple[int, int, int, int]:
    """(total, mention total, room count, room mention count) of a badge frame."""
    return (
        frame["totalUnreadCount"],
        frame["totalMentionCount"],
        frame["roomUnreadCount"],
        frame["roomMentionCount"],
    )


# --- who a message mentions -----------------------------------------------------------------


def test_a_name_ends_where_a_username_cannot_go_on() -> None:
    assert names_after_at("hi @Bob, and @carol") == {"bob", "carol"}
    assert names_after_at("@bob.") == {"bob."}  # "." can be part of a username
    assert names_after_at("mail @alice@bob") == {"alice@bob", "bob"}
    assert names_after_at("no at sign") == set()
    assert names_after_at("a lone @ here") == set()


@pytest.mark.django_db
def test_mentions_are_members_by_name_any_case_never_the_sender() -> None:
    alice, bob, carol, dave = (make_user(name) for name in ("alice", "bob", "carol", "dave"))
    members = [alice.pk, bob.pk, carol.pk]
    found = mentions_in(
        "@BOB and @alice and @dave and @bobby", member_ids=members, sender_id=alice.pk
    )
    assert not found.room
    assert found.of(members, alice.pk) == [bob.pk]  # dave is no member; alice is the sender
    everyone = mentions_in("ping @room!", member_ids=members, sender_id=alice.pk)
    assert everyone.of(members, alice.pk) == [bob.pk, carol.pk]


# --- mentions -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_mention_counts_for_the_one_named_on_every_device_until_read(
    ws: Connections,
) -> None:
    alice, bob, carol = await users("alice", "bob", "carol")
    room = await room_of("general", [alice, bob, carol])
    a, _ = await ws.open(alice)
    phone, _ = await ws.open(bob)
    laptop, _ = await ws.open(bob)
    c, _ = await ws.open(carol)

    await send(a, room, "hello @Bob", "m1")
    await send(a, room, "and everyone else", "m2")

    for device in (phone, laptop):
        assert counts(await badge(device)) == (1, 1, 1, 1)
        assert counts(await badge(device)) == (2, 1, 2, 1)
    assert counts(await badge(c)) == (1, 0, 1, 0)
    updated = await phone.receive_type("chat-room-updated")
    assert updated["mentionCount"] == 1
    _, snapshot = await ws.open(bob)
    assert snapshot["totalMentionCount"] == 1
    assert room_entry(snapshot, room)["mentionCount"] == 1

    joined = await reply(laptop, {"type": "join-room", "roomId": room.pk}, "joined-room")
    assert (joined["totalUnreadCount"], joined["totalMentionCount"]) == (0, 0)
    assert counts(await badge_where(phone, lambda f: f["totalUnreadCount"] == 0)) == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
async def test_room_mentions_everyone_but_its_sender(ws: Connections) -> None:
    alice, bob, carol = await users("alice", "bob", "carol")
    room = await room_of("general", [alice, bob, carol])
    a, _ = await ws.open(alice)
    b, _ = await ws.open(bob)

    await send(a, room, "@room lunch?", "m1")

    assert counts(await badge(b)) == (1, 1, 1, 1)
    await drained()
    assert (await database_sync_to_async(room_badge)(alice.pk, room.pk)).total_mentions == 0
    assert (await database_sync_to_async(room_badge)(carol.pk, room.pk)).room_mentions == 1


# --- notification levels --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_level_decides_what_the_total_counts_on_every_device(ws: Connections) -> None:
    alice, bob = await users("alice", "bob")
    room = await room_of("general", [alice, bob])
    quiet = await room_of("quiet", [alice, bob])
    a, _ = await ws.open(alice)
    phone, _ = await ws.open(bob)
    laptop, _ = await ws.open(bob)
    await send(a, room, "one", "m1")
    await send(a, room, "two @bob", "m2")
    await send(a, quiet, "three", "m3")
    await drained()
    assert (await database_sync_to_async(room_badge)(bob.pk, room.pk)).total == 3
    for device in (phone, laptop):  # the messages' own badge frames, taken first
        await badge_where(device, lambda f: f["totalUnreadCount"] == 3)

    url = f"/api/rooms/{room.pk}/notifications"
    response = await call("PUT", url, bob, {"level": "mentions"})
    assert response.status_code == 200
    assert response.json() == {"roomId": room.pk, "level": "mentions"}
    # The room now adds its one mention, not its two unread; quiet still adds its one.
    for device in (phone, laptop):
        frame = await badge(device)
        assert counts(frame) == (2, 1, 2, 1) and frame["roomId"] == room.pk
        assert frame["level"] == "mentions"  # so another device shows the new level

    await call("PUT", url, bob, {"level": "none"})
    frame = await badge(laptop)
    assert counts(frame) == (1, 0, 2, 1)  # the room's own counts are still reported
    assert frame["level"] == "none"
    _, snapshot = await ws.open(bob)
    assert room_entry(snapshot, room)["level"] == "none"
    assert (snapshot["totalUnreadCount"], snapshot["totalMentionCount"]) == (1, 0)

    # A message in a room at `none`: the counts change, the total does not, and a new version
    # says so on every device.
    before = frame["version"]
    await send(a, room, "four", "m4")
    frame = await badge(laptop)
    assert counts(frame) == (1, 0, 3, 1) and frame["version"] > before

    rooms = (await call("GET", "/api/rooms", bob)).json()
    listed = {entry["id"]: entry for entry in rooms["rooms"]}
    assert (listed[room.pk]["level"], listed[room.pk]["mentionCount"]) == ("none", 1)
    assert (rooms["totalUnreadCount"], rooms["totalMentionCount"]) == (1, 0)


@pytest.mark.django_db
def test_a_level_must_be_one_of_three_and_a_member_s() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice])
    url = f"/api/rooms/{room.pk}/notifications"
    assert_error(http("PUT", url, alice, {"level": "loud"}), 400, "bad_request")
    assert_error(http("PUT", url, alice, {}), 400, "bad_request")
    assert_error(http("PUT", url, bob, {"level": "none"}), 403, "not_a_member")
    assert_error(http("POST", url, alice, {"level": "none"}), 405, "method_not_allowed")
    assert Membership.objects.get(user=alice).level == "all"


@pytest.mark.django_db
def test_mute_is_level_none_and_unmute_level_all() -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    url = f"/api/rooms/{room.pk}/mute"
    assert http("PUT", url, alice, {"muted": True}).json() == {"roomId": room.pk, "muted": True}
    assert Membership.objects.get(user=alice).level == "none"
    http("PUT", url, alice, {"muted": False})
    assert Membership.objects.get(user=alice).level == "all"


# --- edits ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_an_edit_moves_mentions_not_unread_counts_and_tells_viewers(
    ws: Connections,
) -> None:
    alice, bob, carol = await users("alice", "bob", "carol")
    room = await room_of("general", [alice, bob, carol])
    a, _ = await ws.open(alice)
    b, _ = await ws.open(bob)
    viewer, _ = await ws.open(carol)
    await reply(viewer, {"type": "join-room", "roomId": room.pk}, "joined-room")
    sent = await send(a, room, "hi @bob", "m1")
    assert counts(await badge(b)) == (1, 1, 1, 1)
    url = f"/api/rooms/{room.pk}/messages/{sent['messageId']}"

    response = await call("PATCH", url, alice, {"message": "hi all"})
    assert response.status_code == 200
    edited_at = response.json()["editedAt"]
    assert response.json() == {"messageId": sent["messageId"], "editedAt": edited_at}
    assert counts(await badge(b)) == (1, 0, 1, 0)  # still unread, no longer a mention
    frame = await viewer.receive_type("chat-message-edited")
    assert frame == {
        "type": "chat-message-edited",
        "roomId": room.pk,
        "message": {
            "id": sent["messageId"],
            "senderId": alice.pk,
            "body": "hi all",
            "createdAt": sent["createdAt"],
            "editedAt": edited_at,
        },
    }

    await call("PATCH", url, alice, {"message": "hi @BOB and @room"})
    assert counts(await badge(b)) == (1, 1, 1, 1)
    history = (await call("GET", f"/api/rooms/{room.pk}/messages", bob)).json()["messages"]
    assert history[0]["body"] == "hi @BOB and @room"
    assert history[0]["editedAt"] >= edited_at
    # Carol viewed the room: the message was never unread for her, so no mention counts.
    assert (await database_sync_to_async(room_badge)(carol.pk, room.pk)).room_mentions == 0


@pytest.mark.django_db
def test_only_the_sender_edits_and_only_a_message_of_that_room() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    other = make_room("other", [alice])
    message = Message.objects.create(room=room, sender=alice, body="mine")
    url = f"/api/rooms/{room.pk}/messages/{message.pk}"
    assert_error(http("PATCH", url, bob, {"message": "yours"}), 403, "not_allowed")
    assert_error(
        http("PATCH", f"/api/rooms/{other.pk}/messages/{message.pk}", alice, {"message": "x"}),
        404,
        "not_found",
    )
    assert_error(http("PATCH", url, alice, {"message": "  "}), 400, "bad_request")
    assert_error(http("PATCH", url, alice, {"message": "x" * 4001}), 413, "too_large")
    message.refresh_from_db()
    assert (message.body, message.edited_at) == ("mine", None)


# --- delete and mark unread with mentions ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_mention_and_marking_it_unread_again_move_the_mention_count(
    ws: Connections,
) -> None:
    alice, bob = await users("alice", "bob")
    room = await room_of("general", [alice, bob])
    a, _ = await ws.open(alice)
    b, _ = await ws.open(bob)
    first = await send(a, room, "@bob first", "m1")
    second = await send(a, room, "@bob second", "m2")
    assert counts(await badge(b)) == (1, 1, 1, 1)
    assert counts(await badge(b)) == (2, 2, 2, 2)

    await call("DELETE", f"/api/rooms/{room.pk}/messages/{second['messageId']}", alice)
    snapshot = await b.receive_type("unread-state")
    assert (snapshot["totalUnreadCount"], snapshot["totalMentionCount"]) == (1, 1)

    await reply(b, {"type": "join-room", "roomId": room.pk}, "joined-room")
    await reply(b, {"type": "leave-room", "roomId": room.pk}, "left-room")
    await b.send({"type": "mark-unread", "roomId": room.pk, "messageId": first["messageId"]})
    frame = await badge_where(b, lambda f: f["totalUnreadCount"] == 1)
    assert counts(frame) == (1, 1, 1, 1)


# --- the truth ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_reconcile_finds_and_repairs_a_wrong_mention_count_and_level() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    Message.objects.create(room=room, sender=alice, body="hey @bob")
    assert lanes.flush(30)
    assert MessageMention.objects.filter(user=bob).count() == 1
    assert room_badge(bob.pk, room.pk).room_mentions == 1
    redis = redis_connection()
    redis.delete(counters._room_keys(bob.pk, room.pk)[1])  # the mention forgotten
    redis.hset(counters._user_key(bob.pk), f"l:{room.pk}", 2)  # and the level wrong

    with pytest.raises(SystemExit) as exit_info:
        call_command("reconcile_unread_counts", "--check", "--dry-run", stdout=StringIO())
    assert exit_info.value.code == 1
    out = StringIO()
    call_command("reconcile_unread_counts", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["users_drifted"] == 1
    # The room's mention count and its level (the totals were left as they were).
    assert report["counters_repaired"] == 2
    badge_now = room_badge(bob.pk, room.pk)
    assert (badge_now.total, badge_now.total_mentions, badge_now.room_mentions) == (1, 1, 1)
    call_command("reconcile_unread_counts", "--check", stdout=StringIO())  # no drift: no exit


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_mentions_and_levels_and_their_drift() -> None:
    admin_client_of_superuser = Client()
    admin_client_of_superuser.force_login(
        get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    )
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    Membership.objects.filter(user=bob).update(level="mentions")
    Message.objects.create(room=room, sender=alice, body="hey @bob")
    Message.objects.create(room=room, sender=alice, body="and more")
    assert lanes.flush(30)
    assert room_badge(bob.pk, room.pk).room_mentions == 1
    redis_connection().delete(counters._room_keys(bob.pk, room.pk)[1])

    page = admin_client_of_superuser.get(reverse("admin:chat_membership_changelist"))
    html = page.content.decode().lower()
    assert "mentions (database)" in html and "mentions (redis)" in html
    rows = {m.user_id: m for m in page.context["cl"].result_list}
    assert rows[bob.pk]._counts.rooms[room.pk].mentions == 1
    assert rows[bob.pk]._counts.redis_room_mentions(room.pk) == 0
    drifted = admin_client_of_superuser.get(
        reverse("admin:chat_membership_changelist") + "?counts=drifted"
    )
    assert [m.user_id for m in drifted.context["cl"].result_list] == [bob.pk]
    detail = admin_client_of_superuser.get(reverse("admin:auth_user_change", args=[bob.pk]))
    assert "mentions (Redis)" in detail.content.decode()
    assert ">mentions<" in detail.content.decode()  # bob's level in the rooms table
