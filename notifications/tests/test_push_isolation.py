"""A push service that hangs, is slow or fails costs the badge path nothing, and loses no push."""

import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chat.signals import message_created
from chat.tests.helpers import (
    close_quietly,
    connect_user,
    eventually,
    make_room,
    make_user,
)
from notifications.backends import DelayedLoggingPushBackend, FailingPushBackend
from notifications.models import PushDelivery, PushOutbox
from notifications.tests.helpers import RecordingBackend, make_device, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

sync = database_sync_to_async


async def _two_members() -> tuple[Any, Any, Any]:
    alice = await sync(make_user)("alice")
    bob = await sync(make_user)("bob")
    room = await sync(make_room)("general", [alice, bob])
    await sync(make_device)(bob)
    return alice, bob, room


def _send_frame(room: Any, n: int) -> dict[str, Any]:
    return {
        "type": "send-message",
        "roomId": room.pk,
        "message": f"m{n}",
        "clientMessageId": f"c{n}",
    }


def _count(**filters: Any) -> int:
    return PushDelivery.objects.filter(**filters).count()


async def test_badges_and_later_frames_do_not_wait_for_a_hanging_push() -> None:
    import asyncio

    alice, bob, room = await _two_members()
    backend = RecordingBackend()
    backend.gate = asyncio.Event()
    a, _ = await connect_user(alice)
    b, _ = await connect_user(bob)
    try:
        async with running_worker(backend):
            await a.request(_send_frame(room, 0), "message-sent")
            await b.receive_type("total-unread-count-updated")
            await eventually(lambda: len(backend.pushes) == 1)  # that push now hangs
            for n in range(1, 5):
                await a.request(_send_frame(room, n), "message-sent")
            badges = [await b.receive_type("total-unread-count-updated") for _ in range(4)]
            assert [badge["roomUnreadCount"] for badge in badges] == [2, 3, 4, 5]
            # Every send answered and every badge delivered while no push had finished.
            assert await sync(_count)(status="sent") == 0
            await eventually(lambda: len(backend.pushes) == 5)
            backend.gate.set()
            await eventually(lambda: sync(_count)(status="sent"))
            await eventually(lambda: _all_sent(5))
    finally:
        await close_quietly([a, b])


async def _all_sent(n: int) -> bool:
    return await sync(_count)(status="sent") == n


@pytest.mark.parametrize("backend_class", [DelayedLoggingPushBackend, FailingPushBackend])
async def test_a_slow_or_failing_push_service_changes_nothing_for_the_sender(
    backend_class: type,
) -> None:
    alice, bob, room = await _two_members()
    a, _ = await connect_user(alice)
    b, _ = await connect_user(bob)
    try:
        with override_settings(
            NOTIFICATIONS_PUSH_DELAY_SECONDS=0.5, NOTIFICATIONS_PUSH_MAX_ATTEMPTS=2
        ):
            async with running_worker(backend_class()):
                for n in range(3):
                    sent = await a.request(_send_frame(room, n), "message-sent")
                    assert sent["clientMessageId"] == f"c{n}"
                    badge = await b.receive_type("total-unread-count-updated")
                    assert badge["roomUnreadCount"] == n + 1
                final = "sent" if backend_class is DelayedLoggingPushBackend else "failed"
                await eventually(lambda: _all_in(final, 3))
    finally:
        await close_quietly([a, b])


async def _all_in(status: str, n: int) -> bool:
    return await sync(_count)(status=status) == n


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
            sent = await a.request(_send_frame(room, 0), "message-sent")
            badge = await b.receive_type("total-unread-count-updated")
        assert badge["roomUnreadCount"] == 1
        # the push intent was recorded all the same
        assert await sync(PushOutbox.objects.filter(message_id=sent["messageId"]).exists)()
        failure = next(r for r in caplog.records if "tests.broken" in r.getMessage())
        assert "message_id" in failure.getMessage()  # logged with the event that caused it
        await close_quietly([a, b])
    finally:
        message_created.disconnect(dispatch_uid="tests.broken")
