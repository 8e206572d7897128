"""A push service that hangs or fails costs the badge path nothing, and loses no job."""

import asyncio
import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat.signals import message_created
from chat.tests.helpers import connect_user, eventually, make_room, make_user
from notifications import queue
from notifications.backends import FailingPushBackend
from notifications.events import PushJob
from notifications.worker import PushWorker

pytestmark = pytest.mark.django_db(transaction=True)


class GatedBackend:
    """A push service that answers only when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[PushJob] = []
        self.finished: list[PushJob] = []

    async def send(self, job: PushJob) -> None:
        self.started.append(job)
        await self.gate.wait()
        self.finished.append(job)


async def _two_members() -> tuple[Any, Any, Any]:
    alice = await database_sync_to_async(make_user)("alice")
    bob = await database_sync_to_async(make_user)("bob")
    room = await database_sync_to_async(make_room)("general", [alice, bob])
    return alice, bob, room


async def _worker(backend: Any) -> tuple[asyncio.Event, "asyncio.Task[None]"]:
    stop = asyncio.Event()
    worker = PushWorker(backend=backend, concurrency=10, poll_seconds=0.1)
    return stop, asyncio.create_task(worker.run(stop))


async def test_badges_and_later_frames_do_not_wait_for_a_hanging_push() -> None:
    alice, bob, room = await _two_members()
    backend = GatedBackend()
    stop, task = await _worker(backend)
    a, _ = await connect_user(alice)
    b, _ = await connect_user(bob)
    for n in range(5):
        await a.request(
            {
                "type": "send-message",
                "roomId": room.pk,
                "message": f"m{n}",
                "clientMessageId": f"c{n}",
            },
            "message-sent",
        )
    badges = [await b.receive_type("total-unread-count-updated") for _ in range(5)]
    assert [badge["roomUnreadCount"] for badge in badges] == [1, 2, 3, 4, 5]
    # Every send was answered and every badge delivered while no push had finished.
    await eventually(lambda: len(backend.started) == 5)
    assert backend.finished == []
    assert [job["recipient_ids"] for job in backend.started] == [[bob.pk]] * 5
    backend.gate.set()
    stop.set()
    await task
    assert len(backend.finished) == 5
    assert await database_sync_to_async(queue.queue_length)() == 0
    await a.close()
    await b.close()


async def test_a_failing_push_is_logged_and_dead_lettered_and_badges_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, bob, room = await _two_members()
    stop, task = await _worker(FailingPushBackend())
    a, _ = await connect_user(alice)
    b, _ = await connect_user(bob)
    with caplog.at_level(logging.ERROR, logger="notifications.worker"):
        await a.request(
            {"type": "send-message", "roomId": room.pk, "message": "hi", "clientMessageId": "c1"},
            "message-sent",
        )
        badge = await b.receive_type("total-unread-count-updated")
        assert badge["roomUnreadCount"] == 1
        await eventually(database_sync_to_async(queue.dead_jobs))
    stop.set()
    await task
    [dead] = await database_sync_to_async(queue.dead_jobs)()
    assert dead["room_id"] == room.pk and dead["recipient_ids"] == [bob.pk]
    assert any("push failed" in record.getMessage() for record in caplog.records)
    await a.close()
    await b.close()


async def test_a_job_left_by_a_killed_worker_is_picked_up_again() -> None:
    alice, bob, room = await _two_members()
    job = PushJob(
        message_id=1,
        room_id=room.pk,
        sender_id=alice.pk,
        recipient_ids=[bob.pk],
        body="x",
        created_at="2026-01-01T00:00:00Z",
        attempts=0,
    )
    await database_sync_to_async(queue.push_enqueue)(job)
    # A worker took it and died before finishing: it sits in its processing list.
    from chatproject.redis_client import redis_connection

    redis = redis_connection()
    await database_sync_to_async(redis.lmove)(
        queue.queue_key(), queue.processing_key("default"), "RIGHT", "LEFT"
    )
    backend = GatedBackend()
    backend.gate.set()
    stop, task = await _worker(backend)
    await eventually(lambda: backend.finished)
    stop.set()
    await task
    assert backend.finished[0]["message_id"] == 1


async def test_a_failing_receiver_breaks_no_other_receiver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from chatproject.metrics import instrumented_receiver

    @instrumented_receiver("tests.broken")
    def broken(sender: Any, event: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    message_created.connect(broken, dispatch_uid="tests.broken")
    try:
        alice, bob, room = await _two_members()
        a, _ = await connect_user(alice)
        b, _ = await connect_user(bob)
        with caplog.at_level(logging.ERROR, logger="chatproject.events"):
            await a.request(
                {
                    "type": "send-message",
                    "roomId": room.pk,
                    "message": "hi",
                    "clientMessageId": "c",
                },
                "message-sent",
            )
            badge = await b.receive_type("total-unread-count-updated")
        assert badge["roomUnreadCount"] == 1
        # the push receiver ran all the same
        await eventually(lambda: database_sync_to_async(queue.queue_length)())
        failure = next(r for r in caplog.records if "tests.broken" in r.getMessage())
        assert "message_id" in failure.getMessage()  # logged with the event that caused it
        await a.close()
        await b.close()
    finally:
        message_created.disconnect(dispatch_uid="tests.broken")
