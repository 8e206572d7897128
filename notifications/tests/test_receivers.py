"""The push intent is as durable as the message: the outbox row shares its transaction."""

import pytest
from django.db import transaction

from chat.models import Message
from chat.services import message_send
from chat.tests.helpers import make_room, make_user
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
