"""Who gets a push and when: the worker's jobs end to end, with a recording push service."""

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chat.models import Level
from chat.services import (
    message_delete,
    message_edit,
    message_send,
    room_level_set,
    room_mark_read,
)
from chat.tests.helpers import PATIENCE_S, connect_user, eventually, make_room, make_user
from chatproject import lanes
from notifications import jobs, queue
from notifications.backends import DeviceBackends, PushOutcome
from notifications.models import Device, PushDelivery
from notifications.tests.helpers import RecordingBackend, make_device, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

sync = database_sync_to_async


def _send(sender: Any, room: Any, body: str, key: str) -> int:
    return message_send(
        sender_id=sender.pk, room_id=room.pk, body=body, client_message_id=key
    ).message.pk


def _deliveries(**filters: Any) -> list[PushDelivery]:
    return list(PushDelivery.objects.filter(**filters).order_by("pk"))


async def _setup() -> tuple[Any, Any, Any, Device, Device]:
    alice = await sync(make_user)("alice")
    bob = await sync(make_user)("bob")
    room = await sync(make_room)("general", [alice, bob])
    phone = await sync(make_device)(bob, 1, "apns")
    browser = await sync(make_device)(bob, 2, "webpush")
    await sync(make_device)(alice, 1)  # the sender's own device gets nothing
    return alice, bob, room, phone, browser


async def test_a_message_pushes_once_per_device_with_the_absolute_badge() -> None:
    alice, bob, room, phone, browser = await _setup()
    other = await sync(make_room)("other", [alice, bob])
    await sync(_send)(alice, other, "earlier", "c0")  # bob has 1 unread elsewhere
    backend = RecordingBackend()
    async with running_worker(backend):
        message_id = await sync(_send)(alice, room, "hello bob", "c1")
        await eventually(lambda: len(backend.to(phone)) == 2 and len(backend.to(browser)) == 2)
        await asyncio.sleep(0.5)  # nothing more comes
    expected = {
        "type": "chat-message",
        "roomId": room.pk,
        "messageId": message_id,
        "title": f"alice in {room.name}",
        "body": "hello bob",
        "badge": 2,  # the total over every room, not this room's count
        "mention": False,
    }

    def pushed_to(device: Device) -> dict[str, Any]:
        return next(p for p in backend.to(device) if p["messageId"] == message_id)

    assert pushed_to(phone) == pushed_to(browser) == expected
    assert len(backend.pushes) == 4  # two messages, two devices of bob; none to alice
    push = backend.pushes[-1].message
    assert (push.urgency, push.ttl_seconds, push.silent, push.topic) == (
        "high",
        24 * 3600,
        False,
        None,
    )
    sent = await sync(_deliveries)(message_id=message_id)
    assert [(d.status, d.attempts, d.badge) for d in sent] == [("sent", 1, 2)] * 2
    assert all(d.sent_at is not None for d in sent)


async def test_a_message_read_during_the_grace_delay_is_not_pushed() -> None:
    alice, bob, room, phone, _ = await _setup()
    backend = RecordingBackend()
    with override_settings(PUSH_GRACE_SECONDS=1.5):
        async with running_worker(backend):
            message_id = await sync(_send)(alice, room, "hi", "c1")
            await sync(room_mark_read)(user_id=bob.pk, room_id=room.pk, message_id=message_id)
            await eventually(
                lambda: sync(PushDelivery.objects.filter(message_id=message_id).exists)(),
                seconds=10,
            )
    assert backend.to(phone) == [] or all(p["type"] == "badge" for p in backend.to(phone))
    skipped = await sync(_deliveries)(message_id=message_id)
    assert {(d.status, d.reason) for d in skipped} == {("skipped", "read")}


async def test_a_member_viewing_the_room_gets_no_push() -> None:
    alice, bob, room, phone, _ = await _setup()
    client, _ = await connect_user(bob)
    await client.request({"type": "join-room", "roomId": room.pk}, "joined-room")
    backend = RecordingBackend()
    try:
        async with running_worker(backend):
            message_id = await sync(_send)(alice, room, "hi", "c1")
            await eventually(
                lambda: sync(PushDelivery.objects.filter(message_id=message_id).count)(),
                seconds=10,
            )
    finally:
        await client.close()
    assert [p for p in backend.pushes if p.message.payload["type"] == "chat-message"] == []
    skipped = await sync(_deliveries)(message_id=message_id)
    assert {(d.status, d.reason) for d in skipped} == {("skipped", "viewing")}


async def test_a_muted_room_is_not_pushed_and_unmuting_pushes_again() -> None:
    alice, bob, room, phone, _ = await _setup()
    await sync(room_level_set)(user_id=bob.pk, room_id=room.pk, level=Level.NONE)  # muted
    backend = RecordingBackend()
    async with running_worker(backend):
        muted_id = await sync(_send)(alice, room, "quiet", "c1")
        skipped = PushDelivery.objects.filter(message_id=muted_id, status="skipped")
        await eventually(lambda: sync(skipped.exists)())
        await sync(room_level_set)(user_id=bob.pk, room_id=room.pk, level=Level.ALL)
        loud_id = await sync(_send)(alice, room, "loud", "c2")
        await eventually(lambda: [p["messageId"] for p in backend.to(phone)] == [loud_id])
    muted = await sync(_deliveries)(message_id=muted_id)
    assert {(d.status, d.reason) for d in muted} == {("skipped", "muted")}


async def _members_at_levels() -> tuple[Any, Any, dict[str, Device]]:
    """alice sends; bob is at level all, carol at mentions, dave at none; one phone each."""
    alice = await sync(make_user)("alice")
    people = {name: await sync(make_user)(name) for name in ("bob", "carol", "dave")}
    room = await sync(make_room)("general", [alice, *people.values()])
    for name, level in (("carol", Level.MENTIONS), ("dave", Level.NONE)):
        await sync(room_level_set)(user_id=people[name].pk, room_id=room.pk, level=level)
    phones = {name: await sync(make_device)(user) for name, user in people.items()}
    phones["alice"] = await sync(make_device)(alice)
    return alice, room, phones


def _pushed(backend: RecordingBackend, device: Device) -> dict[int, bool]:
    """{message id: its payload's "mention"} of the message pushes this device got."""
    return {p["messageId"]: p["mention"] for p in backend.to(device) if p["type"] == "chat-message"}


async def test_each_level_pushes_what_it_says_and_the_payload_says_mention() -> None:
    alice, room, phones = await _members_at_levels()
    backend = RecordingBackend()
    async with running_worker(backend):
        plain = await sync(_send)(alice, room, "lunch?", "c1")
        named = await sync(_send)(alice, room, "@CAROL lunch?", "c2")  # case does not matter
        everyone = await sync(_send)(alice, room, "@room lunch!", "c3")
        other = await sync(_send)(alice, room, "@bob, @carolyn, carol@ lunch?", "c4")
        sent = [plain, named, everyone, other]
        planned = PushDelivery.objects.filter(message_id__in=sent)

        async def all_planned() -> bool:
            return await sync(planned.count)() == 3 * len(sent)  # bob, carol, dave

        await eventually(all_planned)
        await eventually(lambda: len(_pushed(backend, phones["bob"])) == len(sent))
        await eventually(lambda: len(_pushed(backend, phones["carol"])) == 2)
        await asyncio.sleep(0.5)  # nothing more comes
    # all: every message, "mention" saying which ones name this member.
    assert _pushed(backend, phones["bob"]) == {
        plain: False,
        named: False,
        everyone: True,
        other: True,
    }
    # mentions: only the messages that mention carol, `@room` included; `@carolyn` and
    # `carol@` are not her.
    assert _pushed(backend, phones["carol"]) == {named: True, everyone: True}
    # none: nothing. The sender: nothing of her own messages, her `@room` included.
    assert backend.to(phones["dave"]) == backend.to(phones["alice"]) == []
    reasons = {
        (d.message_id, d.device_id): (d.status, d.reason)
        for d in await sync(_deliveries)(message_id__in=sent)
    }
    for message_id in sent:
        assert reasons[message_id, phones["dave"].pk] == ("skipped", "muted")
    for message_id in (plain, other):
        assert reasons[message_id, phones["carol"].pk] == ("skipped", "unmention")
    assert all((m, phones["alice"].pk) not in reasons for m in sent)


async def test_a_retry_keeps_the_mention() -> None:
    alice, room, phones = await _members_at_levels()
    backend = RecordingBackend(
        lambda target, nth: (
            PushOutcome("retry", error="503") if nth == 1 else PushOutcome("delivered")
        )
    )
    async with running_worker(backend):
        named = await sync(_send)(alice, room, "@carol?", "c1")
        await eventually(lambda: len(backend.to(phones["carol"])) == 2)
    assert [p["mention"] for p in backend.to(phones["carol"])] == [True, True]
    assert [p["mention"] for p in backend.to(phones["bob"])] == [False, False]
    [delivery] = await sync(_deliveries)(message_id=named, device=phones["carol"])
    assert (delivery.status, delivery.attempts) == ("sent", 2)


async def test_an_edit_that_mentions_a_member_at_level_mentions_pushes_them_once() -> None:
    alice, room, phones = await _members_at_levels()
    backend = RecordingBackend()

    async def edit(body: str) -> None:
        await sync(message_edit)(user_id=alice.pk, room_id=room.pk, message_id=sent, body=body)

    async with running_worker(backend):
        sent = await sync(_send)(alice, room, "lunch?", "c1")
        await eventually(lambda: len(_pushed(backend, phones["bob"])) == 1)
        skipped = PushDelivery.objects.filter(message_id=sent, reason="unmention")
        await eventually(lambda: sync(skipped.exists)())
        await edit("lunch? @carol @bob @dave")
        await eventually(lambda: len(_pushed(backend, phones["carol"])) == 1)
        await edit("lunch?")  # and back: no second push
        await edit("lunch? @carol")
        assert await sync(lanes.flush)(PATIENCE_S), "receiver lanes did not drain"
        await asyncio.sleep(1.0)  # past the grace delay of the last edit's job
    assert _pushed(backend, phones["carol"]) == {sent: True}
    assert _pushed(backend, phones["bob"]) == {sent: False}  # level all: pushed when new
    assert backend.to(phones["dave"]) == []  # level none
    [carols] = await sync(_deliveries)(message_id=sent, device=phones["carol"])
    assert (carols.status, carols.reason, carols.attempts) == ("sent", "", 1)


async def test_reading_sends_one_silent_badge_update_to_every_device_for_a_burst() -> None:
    alice, bob, room, phone, browser = await _setup()
    ids = [await sync(_send)(alice, room, f"m{n}", f"c{n}") for n in range(5)]
    backend = RecordingBackend()
    # No message pushes in this test. The burst is read before the worker starts: a worker
    # running meanwhile would send a badge once the window after the first read passed, and
    # how many reads fall in that window would be the machine's load, not the code's.
    with override_settings(PUSH_GRACE_SECONDS=30):
        for message_id in ids:  # a burst of reads, as a client scrolling down
            await sync(room_mark_read)(user_id=bob.pk, room_id=room.pk, message_id=message_id)
        assert await sync(lanes.flush)(PATIENCE_S), "receiver lanes did not drain"
        async with running_worker(backend):
            await eventually(lambda: len(backend.to(phone)) == len(backend.to(browser)) == 1)
            await asyncio.sleep(1.0)  # and no second one
    assert backend.to(phone) == backend.to(browser) == [{"type": "badge", "badge": 0}]
    push = backend.pushes[0].message
    assert (push.silent, push.topic) == (True, "badge")
    assert len(backend.pushes) == 2


async def test_a_later_read_sends_a_later_badge_update() -> None:
    alice, bob, room, phone, _ = await _setup()
    ids = [await sync(_send)(alice, room, f"m{n}", f"c{n}") for n in range(2)]
    backend = RecordingBackend()
    with override_settings(PUSH_GRACE_SECONDS=30):
        async with running_worker(backend):
            await sync(room_mark_read)(user_id=bob.pk, room_id=room.pk, message_id=ids[0])
            await eventually(lambda: backend.to(phone) == [{"type": "badge", "badge": 1}])
            await sync(room_mark_read)(user_id=bob.pk, room_id=room.pk, message_id=ids[1])
            await eventually(lambda: len(backend.to(phone)) == 2)
    assert backend.to(phone)[-1] == {"type": "badge", "badge": 0}


async def test_a_job_that_runs_twice_pushes_each_device_once() -> None:
    alice, bob, room, phone, browser = await _setup()
    with override_settings(PUSH_GRACE_SECONDS=60):
        message_id = await sync(_send)(alice, room, "hi", "c1")
    backend = RecordingBackend()
    backend.gate = asyncio.Event()
    push_queue = queue.push_queue()
    sender = jobs.Sender(DeviceBackends({"apns": backend, "webpush": backend}), push_queue, 10)
    first = asyncio.create_task(jobs.push_message({"sender": sender}, message_id=message_id))
    await eventually(lambda: len(backend.pushes) == 2)
    # The same job again (a sweep after a crash, the relay queueing it twice), mid-push.
    second = await jobs.push_message({"sender": sender}, message_id=message_id)
    backend.gate.set()
    assert await first == 2 and second == 0
    assert sorted(p.target.device_id for p in backend.pushes) == sorted([phone.pk, browser.pk])
    await push_queue.disconnect()


async def test_a_retry_waits_at_least_as_long_as_the_service_asked() -> None:
    alice, bob, room, phone, _ = await _setup()

    def busy_once(target: Any, nth: int) -> PushOutcome:
        if nth == 1:
            return PushOutcome("retry", error="429 Too Many Requests", retry_after_seconds=1.5)
        return PushOutcome("delivered")

    backend = RecordingBackend(busy_once)
    async with running_worker(backend):
        message_id = await sync(_send)(alice, room, "hi", "c1")
        await eventually(lambda: len(backend.to(phone)) == 2)
    first, second = [p for p in backend.pushes if p.target.device_id == phone.pk]
    assert second.at - first.at >= 1.5
    [delivery] = await sync(_deliveries)(message_id=message_id, device=phone)
    assert (delivery.status, delivery.attempts) == ("sent", 2)


async def test_a_push_that_keeps_failing_is_marked_failed_after_the_last_attempt() -> None:
    alice, bob, room, phone, browser = await _setup()
    backend = RecordingBackend(lambda target, nth: PushOutcome("retry", error="503 unavailable"))
    with override_settings(NOTIFICATIONS_PUSH_MAX_ATTEMPTS=3):
        async with running_worker(backend):
            message_id = await sync(_send)(alice, room, "hi", "c1")

            async def both_failed() -> bool:
                failed = PushDelivery.objects.filter(message_id=message_id, status="failed")
                return await sync(failed.count)() == 2

            await eventually(both_failed)
    assert len(backend.to(phone)) == len(backend.to(browser)) == 3
    for delivery in await sync(_deliveries)(message_id=message_id):
        assert delivery.attempts == 3
        assert delivery.last_error == "gave up after 3 attempts: 503 unavailable"


async def test_a_gone_device_is_deactivated_and_gets_nothing_more() -> None:
    alice, bob, room, phone, browser = await _setup()
    backend = RecordingBackend(
        lambda target, nth: (
            PushOutcome("gone", error="410 Unregistered")
            if target.device_id == phone.pk
            else PushOutcome("delivered")
        )
    )
    async with running_worker(backend):
        first = await sync(_send)(alice, room, "one", "c1")
        await eventually(lambda: len(backend.to(phone)) == len(backend.to(browser)) == 1)
        await eventually(lambda: sync(Device.objects.filter(pk=phone.pk, active=False).exists)())
        await sync(_send)(alice, room, "two", "c2")
        await eventually(lambda: len(backend.to(browser)) == 2)
    assert len(backend.to(phone)) == 1
    [gone] = await sync(_deliveries)(message_id=first, device=phone)
    assert (gone.status, gone.last_error) == ("gone", "410 Unregistered")
    phone = await sync(Device.objects.get)(pk=phone.pk)
    assert phone.deactivated_at is not None


async def test_a_message_deleted_during_the_grace_delay_is_not_pushed() -> None:
    alice, bob, room, phone, _ = await _setup()
    backend = RecordingBackend()
    with override_settings(PUSH_GRACE_SECONDS=1.5):
        async with running_worker(backend):
            deleted_id = await sync(_send)(alice, room, "oops", "c1")
            await sync(message_delete)(
                user_id=alice.pk, is_staff=False, room_id=room.pk, message_id=deleted_id
            )
            # Due after the deleted one's job: once its push arrived, that job had its turn.
            kept_id = await sync(_send)(alice, room, "meant this", "c2")
            await eventually(lambda: any(p["messageId"] == kept_id for p in backend.to(phone)))
    pushed = [p.get("messageId") for p in backend.to(phone) if p["type"] == "chat-message"]
    assert pushed == [kept_id]
    assert [p["badge"] for p in backend.to(phone) if p["type"] == "chat-message"] == [1]
