"""The services on their own: query counts on the hot path and what they announce."""

from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from badges.services import badges_apply_message, badges_state
from chat import presence
from chat.app_settings import app_settings
from chat.errors import BadRequest
from chat.events import MessageCreated
from chat.models import Membership, Message
from chat.services import message_send, room_mark_read
from chat.signals import message_created
from chat.tests.helpers import PATIENCE_S, make_room, make_user
from chatproject import lanes

pytestmark = pytest.mark.django_db(transaction=True)


def _room_of(n: int) -> tuple[list[Any], Any]:
    users = [make_user(f"u{i}") for i in range(n)]
    return users, make_room("r", users)


@pytest.mark.parametrize("members", [2, 50])
def test_sending_a_message_costs_the_same_queries_whatever_the_room_size(members: int) -> None:
    users, room = _room_of(members)
    for user in users:  # counters already in Redis, as in steady state
        badges_state(user_id=user.pk, room_ids=[room.pk])
    with CaptureQueriesContext(connection) as queries:
        message_send(sender_id=users[0].pk, room_id=room.pk, body="hi", client_message_id="c1")
    # the member ids (also the membership check), the insert, and the push outbox row that
    # notifications writes in the same transaction so the push is as durable as the message
    # (+ SQLite's BEGIN/COMMIT); the receivers run on their lanes after the commit.
    statements = [
        q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))
    ]
    assert len(statements) == 3, statements
    assert "pushoutbox" in statements[2]
    assert lanes.flush(PATIENCE_S)


def test_badging_a_message_needs_no_query_once_counters_are_loaded() -> None:
    users, room = _room_of(3)
    for user in users:
        badges_state(user_id=user.pk, room_ids=[room.pk])
    event = MessageCreated(
        message_id=1,
        room_id=room.pk,
        sender_id=users[0].pk,
        body="hi",
        created_at="2026-01-01T00:00:00Z",
        member_ids=[u.pk for u in users],
        viewer_ids=[],
        mentioned_ids=[],
        committed_at=0.0,
    )
    with CaptureQueriesContext(connection) as queries:
        badges_apply_message(event)
    assert queries.captured_queries == []
    assert badges_state(user_id=users[1].pk, room_ids=[room.pk]).rooms[room.pk] == 1
    assert lanes.flush(PATIENCE_S)


def test_a_repeated_client_message_id_saves_and_announces_nothing() -> None:
    users, room = _room_of(2)
    announced: list[dict[str, Any]] = []

    def record(sender: Any, event: dict[str, Any], **kwargs: Any) -> None:
        announced.append(event)

    message_created.connect(record, dispatch_uid="tests.record")
    try:
        first = message_send(
            sender_id=users[0].pk, room_id=room.pk, body="hi", client_message_id="same"
        )
        again = message_send(
            sender_id=users[0].pk, room_id=room.pk, body="other", client_message_id="same"
        )
    finally:
        message_created.disconnect(dispatch_uid="tests.record")
    assert first.created and not again.created
    assert again.message.pk == first.message.pk and again.message.body == "hi"
    assert Message.objects.count() == 1
    assert [event["message_id"] for event in announced] == [first.message.pk]
    assert announced[0]["member_ids"] == sorted(u.pk for u in users)


def test_mark_read_never_moves_the_pointer_backwards() -> None:
    users, room = _room_of(2)
    ids = [
        message_send(
            sender_id=users[0].pk, room_id=room.pk, body=str(n), client_message_id=str(n)
        ).message.pk
        for n in range(3)
    ]
    room_mark_read(user_id=users[1].pk, room_id=room.pk, message_id=ids[2])
    room_mark_read(user_id=users[1].pk, room_id=room.pk, message_id=ids[0])
    assert Membership.objects.get(user=users[1], room=room).last_read_message_id == ids[2]
    assert badges_state(user_id=users[1].pk, room_ids=[room.pk]).rooms[room.pk] == 0


def test_a_client_message_id_reused_for_another_room_is_refused() -> None:
    users, room = _room_of(2)
    other = make_room("other", users)
    message_send(sender_id=users[0].pk, room_id=room.pk, body="hi", client_message_id="k")
    with pytest.raises(BadRequest, match="another room"):
        message_send(sender_id=users[0].pk, room_id=other.pk, body="hi", client_message_id="k")
    assert Message.objects.filter(room=other).count() == 0


@pytest.mark.parametrize("viewing", [1, 3])
def test_a_message_moves_exactly_the_viewers_read_pointers(viewing: int) -> None:
    # The UPDATE is compiled once per viewer count; its parameters must land where they belong.
    users, room = _room_of(5)
    before = message_send(sender_id=users[0].pk, room_id=room.pk, body="a", client_message_id="a")
    viewers = users[1 : 1 + viewing]
    for user in viewers:
        presence.viewing_add(room_ids=[room.pk], user_id=user.pk, channel_name=f"c{user.pk}")
    sent = message_send(sender_id=users[0].pk, room_id=room.pk, body="b", client_message_id="b")
    pointers = dict(
        Membership.objects.filter(room=room).values_list("user_id", "last_read_message_id")
    )
    for user in users[1:]:
        expected = sent.message.pk if user in viewers else 0
        assert pointers[user.pk] == expected, (user.pk, pointers)
    assert before.message.pk < sent.message.pk
    assert lanes.flush(PATIENCE_S)


def test_messages_are_saved_in_the_shared_orm_thread_on_sqlite() -> None:
    # SQLite takes one writer at a time; concurrent saves would only queue on its lock.
    assert connection.vendor != "sqlite" or not app_settings.SEND_CONCURRENTLY
    with override_settings(CHAT_SEND_CONCURRENTLY=True):
        assert app_settings.SEND_CONCURRENTLY
