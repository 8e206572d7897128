"""The push worker with the real protocol backends against the local push services.

A message sent in a room reaches the recipient's browser decrypted, with the absolute badge, and
the recipient's phone over HTTP/2; the services' answers drive the worker: 410 deactivates the
device, 429 is retried no sooner than Retry-After, 500 is retried and then marked failed.

The worker and its helpers come with the push worker's branch (pushcore); until it is merged
beside these backends this module skips. After the merge the importlib lookups can become
plain imports.
"""

import importlib
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chat.services import message_send, room_mark_read
from chat.tests.helpers import eventually, make_room, make_user
from notifications.apns import ApnsBackend
from notifications.tests.doubles.apns import ApnsAnswer, ApnsService, device_token
from notifications.tests.doubles.webpush import Answer, Subscription, WebPushService
from notifications.webpush import WebPushBackend

try:
    helpers = importlib.import_module("notifications.tests.helpers")
    models = importlib.import_module("notifications.models")
    running_worker = helpers.running_worker
    PushDelivery = models.PushDelivery
except (ImportError, AttributeError):
    pytest.skip("needs the push worker (notifications.tests.helpers)", allow_module_level=True)

pytestmark = pytest.mark.django_db(transaction=True)

sync = database_sync_to_async


def _send(sender: Any, room: Any, body: str, key: str) -> int:
    sent = message_send(sender_id=sender.pk, room_id=room.pk, body=body, client_message_id=key)
    return int(sent.message.pk)


def _browser(user: Any, subscription: Subscription) -> Any:
    keys = {"p256dh": subscription.p256dh, "auth": subscription.auth}
    return models.Device.objects.create(
        user=user, kind="webpush", address=subscription.endpoint, keys=keys
    )


def _phone(user: Any, token: str) -> Any:
    return models.Device.objects.create(user=user, kind="apns", address=token)


async def _people() -> tuple[Any, Any, Any]:
    alice = await sync(make_user)("alice")
    bob = await sync(make_user)("bob")
    room = await sync(make_room)("general", [alice, bob])
    return alice, bob, room


def _statuses(message_id: int) -> list[tuple[str, int]]:
    deliveries = PushDelivery.objects.filter(message_id=message_id).order_by("pk")
    return [(d.status, d.attempts) for d in deliveries]


async def test_a_message_reaches_the_browser_decrypted_with_the_absolute_badge(
    webpush_service: WebPushService,
) -> None:
    alice, bob, room = await _people()
    other = await sync(make_room)("other", [alice, bob])
    subscription = webpush_service.subscribe()
    await sync(_browser)(bob, subscription)
    await sync(_send)(alice, other, "earlier", "c0")  # bob has 1 unread elsewhere
    async with running_worker(WebPushBackend()):
        message_id = await sync(_send)(alice, room, "hello bob", "c1")
        await webpush_service.wait_for_pushes_async(2)
        await sync(room_mark_read)(user_id=bob.pk, room_id=room.pk, message_id=message_id)
        await webpush_service.wait_for_pushes_async(3)
    # The two message pushes run side by side after their grace delays: find ours by its id.
    (message,) = [p for p in webpush_service.pushes if p.payload.get("messageId") == message_id]
    (badge,) = [p for p in webpush_service.pushes if p.payload["type"] == "badge"]
    assert message.payload == {
        "type": "chat-message",
        "roomId": room.pk,
        "messageId": message_id,
        "title": message.payload["title"],
        "body": "hello bob",
        "badge": 2,
        "mention": False,
    }
    assert "alice" in message.payload["title"]
    assert (message.ttl, message.urgency, message.topic) == (24 * 3600, "high", None)
    # Reading sends the new total as a silent update that replaces any older one waiting.
    assert badge.payload == {"type": "badge", "badge": 1}
    assert (badge.urgency, badge.topic) == ("low", "badge")


async def test_410_deactivates_the_browser(webpush_service: WebPushService) -> None:
    alice, bob, room = await _people()
    gone = await sync(_browser)(bob, webpush_service.subscribe(answer=Answer(410)))
    async with running_worker(WebPushBackend()):
        message_id = await sync(_send)(alice, room, "hi", "c1")
        inactive = models.Device.objects.filter(pk=gone.pk, active=False)
        await eventually(lambda: sync(inactive.exists)())
    assert await sync(_statuses)(message_id) == [("gone", 1)]


async def test_429_is_retried_no_sooner_than_retry_after(webpush_service: WebPushService) -> None:
    alice, bob, room = await _people()
    busy = webpush_service.subscribe(script=[Answer(429, retry_after="1")])
    await sync(_browser)(bob, busy)
    async with running_worker(WebPushBackend()):
        message_id = await sync(_send)(alice, room, "hi", "c1")
        first, second = await webpush_service.wait_for_pushes_async(2, timeout=15)
        sent = PushDelivery.objects.filter(message_id=message_id, status="sent")
        await eventually(lambda: sync(sent.exists)())
    assert (first.status, second.status) == (429, 201)
    assert second.received_at - first.received_at >= 1.0
    assert await sync(_statuses)(message_id) == [("sent", 2)]


async def test_500_is_retried_then_marked_failed(webpush_service: WebPushService) -> None:
    alice, bob, room = await _people()
    await sync(_browser)(bob, webpush_service.subscribe(answer=Answer(500)))
    with override_settings(NOTIFICATIONS_PUSH_MAX_ATTEMPTS=3):
        async with running_worker(WebPushBackend()):
            message_id = await sync(_send)(alice, room, "hi", "c1")
            failed = PushDelivery.objects.filter(message_id=message_id, status="failed")
            await eventually(lambda: sync(failed.exists)())
    assert len(webpush_service.pushes) == 3
    assert await sync(_statuses)(message_id) == [("failed", 3)]


async def test_a_message_reaches_the_phone_and_unregistered_deactivates_it(
    apns_service: ApnsService,
) -> None:
    alice, bob, room = await _people()
    phone = await sync(_phone)(bob, device_token())
    old_phone = await sync(_phone)(bob, device_token())
    apns_service.answers[old_phone.address] = ApnsAnswer(410, "Unregistered")
    async with running_worker(ApnsBackend()):
        message_id = await sync(_send)(alice, room, "hello bob", "c1")
        await apns_service.wait_for_notifications_async(2)
        inactive = models.Device.objects.filter(pk=old_phone.pk, active=False)
        await eventually(lambda: sync(inactive.exists)())
    [push] = [n for n in apns_service.notifications if n.device_token == phone.address]
    assert push.aps["badge"] == 1
    assert push.aps["alert"]["body"] == "hello bob"
    assert push.payload["messageId"] == message_id
    assert (push.headers["apns-push-type"], push.headers["apns-priority"]) == ("alert", "10")
    assert push.headers["apns-topic"] == apns_service.credentials.topic
