"""The relay: pushes of messages saved while Redis was unreachable, and of jobs queued before
a worker started, are sent once it runs."""

import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chat.services import message_send
from chat.tests.helpers import eventually, make_room, make_user
from chatproject import lanes
from chatproject.redis_client import redis_connection
from notifications import queue
from notifications.models import PushDelivery, PushOutbox
from notifications.tests.helpers import RecordingBackend, make_device, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

sync = database_sync_to_async

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _send_while_redis_is_unreachable(sender: Any, room: Any) -> int:
    redis_connection.cache_clear()
    try:
        with override_settings(REDIS_URL=UNREACHABLE):
            with pytest.raises(Exception):  # noqa: B017 - any refusal: it is unreachable
                redis_connection().ping()
            sent = message_send(
                sender_id=sender.pk, room_id=room.pk, body="while down", client_message_id="c1"
            )
            assert lanes.flush(10)  # the receivers tried (and failed) with Redis down
    finally:
        redis_connection.cache_clear()
    return sent.message.pk


async def test_a_message_saved_while_redis_is_unreachable_is_pushed_once_redis_is_back() -> None:
    alice = await sync(make_user)("alice")
    bob = await sync(make_user)("bob")
    room = await sync(make_room)("general", [alice, bob])
    phone = await sync(make_device)(bob)
    message_id = await sync(_send_while_redis_is_unreachable)(alice, room)
    assert await sync(PushOutbox.objects.filter(message_id=message_id).exists)()
    backend = RecordingBackend()
    # No nudge reached any relay: the poll finds the row.
    async with running_worker(backend):
        await eventually(lambda: len(backend.to(phone)) == 1, seconds=10)
    assert backend.to(phone)[0]["messageId"] == message_id
    assert not await sync(PushOutbox.objects.exists)()


async def test_jobs_queued_before_a_worker_runs_are_sent_when_it_starts() -> None:
    alice = await sync(make_user)("alice")
    bob = await sync(make_user)("bob")
    room = await sync(make_room)("general", [alice, bob])
    phone = await sync(make_device)(bob)
    sent = await sync(message_send)(
        sender_id=alice.pk, room_id=room.pk, body="queued", client_message_id="c1"
    )
    push_queue = queue.push_queue()
    assert await push_queue.enqueue_push(
        queue.MESSAGE_JOB,
        key=queue.message_job_key(sent.message.pk),
        at=time.time(),
        message_id=sent.message.pk,
    )
    await push_queue.disconnect()
    await sync(PushOutbox.objects.all().delete)()  # only the queue knows about it now
    backend = RecordingBackend()
    async with running_worker(backend):
        await eventually(lambda: len(backend.to(phone)) == 1, seconds=10)
    delivery = await sync(PushDelivery.objects.get)(device=phone)
    assert delivery.status == "sent"


async def test_a_message_relayed_twice_is_pushed_once() -> None:
    alice = await sync(make_user)("alice")
    bob = await sync(make_user)("bob")
    room = await sync(make_room)("general", [alice, bob])
    phone = await sync(make_device)(bob)
    backend = RecordingBackend()
    async with running_worker(backend):
        sent = await sync(message_send)(
            sender_id=alice.pk, room_id=room.pk, body="once", client_message_id="c1"
        )
        await eventually(lambda: len(backend.to(phone)) == 1, seconds=10)
        # A relay that died between queueing and deleting leaves the row: it is relayed again.
        await sync(PushOutbox.objects.create)(message_id=sent.message.pk)
        await eventually(_outbox_empty, seconds=10)
        await eventually(lambda: queue.queue_depth() == 0, seconds=10)
    assert len(backend.to(phone)) == 1


async def _outbox_empty() -> bool:
    return not await sync(PushOutbox.objects.exists)()
