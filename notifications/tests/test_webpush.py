"""WebPushBackend against a local Web Push service that checks VAPID and decrypts like a browser."""

import asyncio
import email.utils
import socket
import time
from collections.abc import AsyncIterator

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from chat.tests.helpers import make_user, token_for
from notifications.backends import PushMessage, PushTarget
from notifications.models import Device
from notifications.tests.doubles.apns import TlsFiles, server_ssl_context
from notifications.tests.doubles.fixtures import VapidKeys
from notifications.tests.doubles.webpush import Answer, WebPushService
from notifications.webpush import WebPushBackend, parse_retry_after, web_push_topic

MESSAGE_PAYLOAD = {
    "type": "chat-message",
    "roomId": 7,
    "messageId": 1234,
    "title": "general",
    "body": "lunch at noon? 🍜",
    "badge": 5,
    "mention": False,
}


@pytest.fixture
async def backend(webpush_service: WebPushService) -> AsyncIterator[WebPushBackend]:
    backend = WebPushBackend()
    yield backend
    await backend.aclose()


async def test_payload_arrives_decrypted_with_ttl_urgency_and_topic(
    backend: WebPushBackend, webpush_service: WebPushService, vapid_keys: VapidKeys
) -> None:
    subscription = webpush_service.subscribe()
    message = PushMessage(payload=MESSAGE_PAYLOAD, ttl_seconds=3600, urgency="high", topic="room-7")

    outcome = await backend.send(subscription.target(), message)

    assert outcome.status == "delivered", outcome
    [push] = webpush_service.pushes
    assert push.subscription_id == subscription.id
    assert push.payload == MESSAGE_PAYLOAD
    assert (push.ttl, push.urgency, push.topic) == (3600, "high", "room-7")
    # The JWT was verified against vapid_keys.public_key; its claims are the ones we set.
    assert push.claims["aud"] == webpush_service.origin
    assert push.claims["sub"] == "mailto:push-tests@example.com"
    assert time.time() < push.claims["exp"] <= time.time() + 24 * 3600


async def test_silent_badge_update_has_no_topic_unless_given(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    subscription = webpush_service.subscribe()
    await backend.send(
        subscription.target(),
        PushMessage(payload={"type": "badge", "badge": 0}, silent=True, urgency="low"),
    )
    [push] = webpush_service.pushes
    assert push.payload == {"type": "badge", "badge": 0}
    # TTL is always sent: pywebpush alone would send 0 ("now or never").
    assert (push.ttl, push.urgency, push.topic) == (24 * 3600, "low", None)


async def test_silent_pushes_default_to_low_urgency(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    subscription = webpush_service.subscribe()
    await backend.send(subscription.target(), _badge())
    await backend.send(subscription.target(), PushMessage(MESSAGE_PAYLOAD))
    assert [push.urgency for push in webpush_service.pushes] == ["low", "normal"]


async def test_pushes_one_after_another_reuse_one_connection(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    for _ in range(5):
        outcome = await backend.send(webpush_service.subscribe().target(), _badge())
        assert outcome.status == "delivered"
    assert len(webpush_service.connections) == 1


async def test_a_slow_service_gets_the_pushes_at_once_not_in_turn(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    webpush_service.delay_seconds = 0.5
    subscriptions = [webpush_service.subscribe() for _ in range(40)]
    outcomes = await asyncio.gather(*(backend.send(s.target(), _badge()) for s in subscriptions))
    assert {o.status for o in outcomes} == {"delivered"}
    # All 40 were waiting at the service together: the session does not queue them.
    assert webpush_service.max_in_flight == 40


async def test_many_pushes_share_connections_and_token(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    subscriptions = [webpush_service.subscribe() for _ in range(20)]
    outcomes = await asyncio.gather(
        *(
            backend.send(s.target(i), PushMessage(payload={"type": "badge", "badge": i}))
            for i, s in enumerate(subscriptions)
        )
    )
    assert {o.status for o in outcomes} == {"delivered"}
    badges = {push.subscription_id: push.payload["badge"] for push in webpush_service.pushes}
    assert badges == {s.id: i for i, s in enumerate(subscriptions)}
    # One VAPID token, signed once, served every push.
    assert len({push.claims["exp"] for push in webpush_service.pushes}) == 1


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_subscription(
    backend: WebPushBackend, webpush_service: WebPushService, status: int
) -> None:
    webpush_service.answer_with(status)
    outcome = await backend.send(webpush_service.subscribe().target(), _badge())
    assert outcome.status == "gone"
    assert str(status) in outcome.error


async def test_unknown_endpoint_is_gone(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    subscription = webpush_service.subscribe()
    target = subscription.target()
    forgotten = type(target)(1, "webpush", f"{webpush_service.origin}/push/expired", target.keys)
    outcome = await backend.send(forgotten, _badge())
    assert outcome.status == "gone"


async def test_429_retries_after_the_delay_asked(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    webpush_service.answer_with(429, retry_after="120")
    outcome = await backend.send(webpush_service.subscribe().target(), _badge())
    assert outcome.status == "retry"
    assert outcome.retry_after_seconds == 120


async def test_retry_after_as_an_http_date(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    when = email.utils.formatdate(time.time() + 600, usegmt=True)
    webpush_service.answer_with(503, retry_after=when)
    outcome = await backend.send(webpush_service.subscribe().target(), _badge())
    assert outcome.status == "retry"
    assert outcome.retry_after_seconds is not None
    assert 500 < outcome.retry_after_seconds <= 600


async def test_a_scripted_subscription_answers_in_turn(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    subscription = webpush_service.subscribe(script=[Answer(429, "1"), Answer(500)])
    outcomes = [(await backend.send(subscription.target(), _badge())).status for _ in range(3)]
    assert outcomes == ["retry", "retry", "delivered"]
    assert [push.status for push in webpush_service.pushes] == [429, 500, 201]


async def test_500_retries_without_a_delay(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    webpush_service.answer_with(500)
    outcome = await backend.send(webpush_service.subscribe().target(), _badge())
    assert (outcome.status, outcome.retry_after_seconds) == ("retry", None)
    assert outcome.error.startswith("500")


async def test_400_fails_for_good(backend: WebPushBackend, webpush_service: WebPushService) -> None:
    subscription = webpush_service.subscribe(answer=Answer(400))
    outcome = await backend.send(subscription.target(), _badge())
    assert outcome.status == "failed"
    assert outcome.error.startswith("400")


async def test_timeout_and_refused_connection_retry(
    webpush_service: WebPushService, settings: SettingsWrapper
) -> None:
    settings.NOTIFICATIONS_PUSH_TIMEOUT_SECONDS = 0.2
    webpush_service.delay_seconds = 2
    backend = WebPushBackend()
    try:
        slow = await backend.send(webpush_service.subscribe().target(), _badge())
        target = webpush_service.subscribe().target()
        closed_port = type(target)(1, "webpush", f"http://127.0.0.1:{_free_port()}/x", target.keys)
        refused = await backend.send(closed_port, _badge())
    finally:
        await backend.aclose()
    assert slow.status == "retry"
    assert refused.status == "retry"


async def test_a_signature_by_another_key_is_refused_by_the_service(
    vapid_keys: VapidKeys, settings: SettingsWrapper
) -> None:
    # The double really checks the JWT: a server with another key gets a 403.
    with WebPushService(vapid_public_key=vapid_keys.public_key) as service:
        from notifications.vapid import vapid_key_pair_generate

        settings.WEBPUSH_VAPID_PRIVATE_KEY = vapid_key_pair_generate()[0]
        backend = WebPushBackend()
        try:
            outcome = await backend.send(service.subscribe().target(), _badge())
        finally:
            await backend.aclose()
        assert outcome.status == "failed"
        assert outcome.error.startswith("403")
        assert service.rejections and not service.pushes


async def test_not_configured_fails_without_sending(
    webpush_service: WebPushService, settings: SettingsWrapper
) -> None:
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    backend = WebPushBackend()
    outcome = await backend.send(webpush_service.subscribe().target(), _badge())
    await backend.aclose()
    assert outcome.status == "failed"
    assert not webpush_service.pushes


async def test_a_bad_endpoint_fails(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    target = webpush_service.subscribe().target()
    broken = type(target)(1, "webpush", "ftp://push.example.com/x", target.keys)
    outcome = await backend.send(broken, _badge())
    assert outcome.status == "failed"


async def test_bad_subscription_keys_fail(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    target = webpush_service.subscribe().target()
    broken = type(target)(1, "webpush", target.address, {"p256dh": "AAAA", "auth": "AAAA"})
    outcome = await backend.send(broken, _badge())
    assert outcome.status == "failed"


@pytest.mark.django_db
def test_a_subscription_registered_over_http_gets_its_push(
    client: Client, webpush_https_service: WebPushService
) -> None:
    subscription = webpush_https_service.subscribe()
    response = client.post(
        "/api/devices",
        {"kind": "webpush", "subscription": subscription.as_json()},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token_for(make_user('alice'))}"},
    )
    assert response.status_code == 201, response.content
    device = Device.objects.get(pk=response.json()["id"])
    target = PushTarget(device.pk, device.kind, device.address, device.keys)

    async def send() -> str:
        backend = WebPushBackend()
        try:
            return (await backend.send(target, PushMessage(MESSAGE_PAYLOAD))).status
        finally:
            await backend.aclose()

    assert asyncio.run(send()) == "delivered"
    assert [push.payload for push in webpush_https_service.pushes] == [MESSAGE_PAYLOAD]


async def test_https_with_a_certificate_trusted_through_ssl_cert_file(
    vapid_keys: VapidKeys, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_cert))
    service = WebPushService(
        vapid_public_key=vapid_keys.public_key, ssl_context=server_ssl_context(tls_files)
    )
    with service:
        backend = WebPushBackend()
        try:
            outcome = await backend.send(service.subscribe().target(), _badge())
        finally:
            await backend.aclose()
        monkeypatch.delenv("SSL_CERT_FILE")
        untrusting = WebPushBackend()  # the system store alone does not know the test CA
        try:
            refused = await untrusting.send(service.subscribe().target(), _badge())
        finally:
            await untrusting.aclose()
    assert outcome.status == "delivered", outcome
    assert service.origin.startswith("https://")
    assert refused.status == "retry"
    assert "certificate" in refused.error.lower()


async def test_an_invalid_topic_is_replaced_by_a_stable_digest(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    subscription = webpush_service.subscribe()
    for topic in ("badge:user:42 (too long for a Web Push Topic header)", "room-7"):
        message = PushMessage({"type": "badge", "badge": 1}, silent=True, topic=topic)
        await backend.send(subscription.target(), message)
    await backend.send(subscription.target(), message)
    long_topic, short, again = (push.topic for push in webpush_service.pushes)
    assert long_topic is not None and len(long_topic) == 32
    assert (short, again) == ("room-7", "room-7")
    assert web_push_topic("badge:user:42 (too long for a Web Push Topic header)") == long_topic


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("30") == 30
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == 90
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def _badge() -> PushMessage:
    return PushMessage(payload={"type": "badge", "badge": 3}, silent=True)


async def test_waiting_for_pushes_inside_the_senders_loop(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    subscription = webpush_service.subscribe()
    sending = asyncio.create_task(backend.send(subscription.target(), _badge()))
    [push] = await webpush_service.wait_for_pushes_async(1)
    assert push.payload["type"] == "badge"
    assert (await sending).status == "delivered"
    with pytest.raises(TimeoutError):
        await webpush_service.wait_for_pushes_async(2, timeout=0.1)


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_long_message_is_shortened_to_fit_the_push_service(
    backend: WebPushBackend, webpush_service: WebPushService
) -> None:
    payload = {**MESSAGE_PAYLOAD, "body": "🍜" * 4000}
    outcome = await backend.send(webpush_service.subscribe().target(), PushMessage(payload))
    assert outcome.status == "delivered", outcome
    [push] = webpush_service.pushes
    body = push.payload["body"]
    assert body.endswith("…") and set(body[:-1]) == {"🍜"} and len(body) > 900
    assert {**push.payload, "body": ""} == {**MESSAGE_PAYLOAD, "body": ""}
