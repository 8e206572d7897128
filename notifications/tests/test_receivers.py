"""The push intent is as durable as the message: the outbox row shares its transaction; an
edit that adds a mention someone's level pushes writes the row again."""

import pytest
from django.db import transaction

from chat.models import Level, Message
from chat.services import message_edit, message_send, room_level_set, room_mark_read
from chat.tests.helpers import PATIENCE_S, make_room, make_user
from chatproject import lanes
from notifications.models import PushOutbox

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_outbox_row_commits_and_rolls_back_with_its_message() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    with pytest.raises(RuntimeError), transaction.atomic():
        message = Message.objects.create(room=room, sender=alice, body="never")
        assert PushOutbox.objects.filter(message_id=message.pk).exists()
        raise RuntimeError("the sender's transaction fails after the insert")
    assert not Message.objects.exists() and not PushOutbox.objects.exists()
    sent = message_send(sender_id=alice.pk, room_id=room.pk, body="hi", client_message_id="c")
    [row] = PushOutbox.objects.all()
    assert row.message_id == sent.message.pk
    assert row.created_at == sent.message.created_at


def test_a_repeated_send_writes_no_second_outbox_row() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    for _ in range(2):
        message_send(sender_id=alice.pk, room_id=room.pk, body="hi", client_message_id="same")
    assert PushOutbox.objects.count() == 1


def test_an_edit_owes_an_outbox_row_only_to_a_new_unread_mention_at_level_mentions() -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = make_room("general", [alice, bob, carol])
    room_level_set(user_id=carol.pk, room_id=room.pk, level=Level.MENTIONS)
    message_id = message_send(
        sender_id=alice.pk, room_id=room.pk, body="hi", client_message_id="c"
    ).message.pk

    def edit(body: str) -> list[tuple[int, object]]:
        """Edit, as the relay would find the outbox after it: [(message, row time)]."""
        PushOutbox.objects.all().delete()  # relayed
        message_edit(user_id=alice.pk, room_id=room.pk, message_id=message_id, body=body)
        assert lanes.flush(PATIENCE_S), "receiver lanes did not drain"
        return list(PushOutbox.objects.values_list("message_id", "created_at"))

    assert edit("hi @bob") == []  # level all: pushed, or decided, when it was new
    # Due, like a new message's row, a grace delay after it was written: after the edit.
    assert edit("hi @bob @carol") == [(message_id, Message.objects.get(pk=message_id).edited_at)]
    assert edit("hi @bob @carol @room") == []  # no new mention
    assert edit("hi") == []  # mentions only removed
    room_mark_read(user_id=carol.pk, room_id=room.pk, message_id=message_id)
    assert edit("hi @carol") == []  # read
