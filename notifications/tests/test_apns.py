"""ApnsBackend against a local APNs over HTTP/2 and TLS that checks the provider token."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from notifications.apns import ApnsBackend
from notifications.backends import PushMessage
from notifications.tests.doubles.apns import ApnsAnswer, ApnsService, apns_target, device_token

MESSAGE_PAYLOAD = {
    "type": "chat-message",
    "roomId": 7,
    "messageId": 1234,
    "title": "general",
    "body": "lunch at noon?",
    "badge": 5,
    "mention": True,
}


@pytest.fixture
async def backend(apns_service: ApnsService) -> AsyncIterator[ApnsBackend]:
    backend = ApnsBackend()
    yield backend
    await backend.aclose()


async def test_message_push_is_an_alert_with_badge_and_collapse_id(
    backend: ApnsBackend, apns_service: ApnsService
) -> None:
    token = device_token()
    message = PushMessage(payload=MESSAGE_PAYLOAD, ttl_seconds=3600, topic="room-7")

    outcome = await backend.send(apns_target(token), message)

    assert outcome.status == "delivered", outcome
    [push] = apns_service.notifications
    assert push.device_token == token
    assert push.payload == {
        "aps": {
            "alert": {"title": "general", "body": "lunch at noon?"},
            "badge": 5,
            "sound": "default",
            "thread-id": "room-7",
        },
        "roomId": 7,
        "messageId": 1234,
        "mention": True,
    }
    headers = push.headers
    assert headers["apns-topic"] == apns_service.credentials.topic
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "room-7"
    assert time.time() + 3500 < int(headers["apns-expiration"]) <= time.time() + 3600
    # The provider token was verified against the team's key by the double.
    assert push.claims["iss"] == apns_service.credentials.team_id


async def test_silent_badge_update_is_badge_only_at_low_priority(
    backend: ApnsBackend, apns_service: ApnsService
) -> None:
    message = PushMessage(payload={"type": "badge", "badge": 0}, silent=True, topic="badge")
    outcome = await backend.send(apns_target(device_token()), message)
    assert outcome.status == "delivered", outcome
    [push] = apns_service.notifications
    assert push.payload == {"aps": {"badge": 0}}
    assert push.headers["apns-push-type"] == "alert"
    assert push.headers["apns-priority"] == "5"
    assert push.headers["apns-collapse-id"] == "badge"


async def test_no_collapse_id_without_a_topic(
    backend: ApnsBackend, apns_service: ApnsService
) -> None:
    await backend.send(apns_target(device_token()), PushMessage(payload=MESSAGE_PAYLOAD))
    [push] = apns_service.notifications
    assert "apns-collapse-id" not in push.headers


async def test_a_long_topic_becomes_a_collapse_id_apns_takes(
    backend: ApnsBackend, apns_service: ApnsService
) -> None:
    topic = "badge-update-" + "x" * 80
    for _ in range(2):
        message = PushMessage(payload={"type": "badge", "badge": 1}, silent=True, topic=topic)
        assert (await backend.send(apns_target(device_token()), message)).status == "delivered"
    first, second = (n.headers["apns-collapse-id"] for n in apns_service.notifications)
    assert first == second and len(first.encode()) <= 64


async def test_many_pushes_over_one_connection(
    backend: ApnsBackend, apns_service: ApnsService
) -> None:
    tokens = [device_token() for _ in range(30)]
    outcomes = await asyncio.gather(
        *(
            backend.send(apns_target(t), PushMessage(payload={"type": "badge", "badge": i}))
            for i, t in enumerate(tokens)
        )
    )
    assert {o.status for o in outcomes} == {"delivered"}
    badges = {n.device_token: n.aps["badge"] for n in apns_service.notifications}
    assert badges == {t: i for i, t in enumerate(tokens)}
    assert apns_service.connections == 1  # HTTP/2 multiplexes them


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (410, "Unregistered", "gone"),
        (400, "BadDeviceToken", "gone"),
        (429, "TooManyRequests", "retry"),
        (500, "InternalServerError", "retry"),
        (503, "ServiceUnavailable", "retry"),
        (400, "BadCollapseId", "failed"),
        (413, "PayloadTooLarge", "failed"),
    ],
)
async def test_answers_map_to_outcomes(
    backend: ApnsBackend, apns_service: ApnsService, status: int, reason: str, expected: str
) -> None:
    token = device_token()
    apns_service.answers[token] = ApnsAnswer(status, reason)
    outcome = await backend.send(apns_target(token), PushMessage(payload=MESSAGE_PAYLOAD))
    assert outcome.status == expected
    assert outcome.error == f"{status} {reason}"


async def test_one_bad_device_does_not_disturb_the_others(
    backend: ApnsBackend, apns_service: ApnsService
) -> None:
    gone, fine = device_token(), device_token()
    apns_service.answers[gone] = ApnsAnswer(410, "Unregistered")
    outcomes = await asyncio.gather(
        backend.send(apns_target(gone), PushMessage(payload=MESSAGE_PAYLOAD)),
        backend.send(apns_target(fine), PushMessage(payload=MESSAGE_PAYLOAD)),
    )
    assert [o.status for o in outcomes] == ["gone", "delivered"]


async def test_a_slow_service_times_out_as_retry(
    apns_service: ApnsService, settings: SettingsWrapper
) -> None:
    settings.NOTIFICATIONS_PUSH_TIMEOUT_SECONDS = 0.3
    apns_service.delay_seconds = 3
    backend = ApnsBackend()
    try:
        outcome = await backend.send(apns_target(device_token()), PushMessage(MESSAGE_PAYLOAD))
    finally:
        await backend.aclose()
    assert outcome.status == "retry"


async def test_an_untrusted_certificate_is_not_spoken_to(
    apns_service: ApnsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    backend = ApnsBackend()
    try:
        outcome = await backend.send(apns_target(device_token()), PushMessage(MESSAGE_PAYLOAD))
    finally:
        await backend.aclose()
    assert outcome.status == "retry"
    assert not apns_service.notifications


async def test_not_configured_fails_without_sending(
    apns_service: ApnsService, settings: SettingsWrapper
) -> None:
    settings.APNS_KEY_FILE = ""
    backend = ApnsBackend()
    outcome = await backend.send(apns_target(device_token()), PushMessage(MESSAGE_PAYLOAD))
    assert outcome.status == "failed"
    assert not apns_service.notifications


async def test_waiting_for_pushes_inside_the_senders_loop(
    backend: ApnsBackend, apns_service: ApnsService
) -> None:
    sending = asyncio.create_task(
        backend.send(apns_target(device_token()), PushMessage(MESSAGE_PAYLOAD))
    )
    [push] = await apns_service.wait_for_notifications_async(1)
    assert push.aps["badge"] == 5
    assert (await sending).status == "delivered"


async def test_an_unusable_key_file_fails_without_sending(
    apns_service: ApnsService, settings: SettingsWrapper, tmp_path: Path
) -> None:
    for content in ("not a key", None):
        key_file = tmp_path / "AuthKey.p8"
        if content is None:
            key_file.unlink()
        else:
            key_file.write_text(content)
        settings.APNS_KEY_FILE = str(key_file)
        backend = ApnsBackend()
        outcome = await backend.send(apns_target(device_token()), PushMessage(MESSAGE_PAYLOAD))
        await backend.aclose()
        assert outcome.status == "failed"
        assert "APNs key unusable" in outcome.error
    assert not apns_service.notifications


async def test_a_long_message_is_shortened_to_fit_apns(
    backend: ApnsBackend, apns_service: ApnsService
) -> None:
    payload = {**MESSAGE_PAYLOAD, "body": "é" * 4000}
    outcome = await backend.send(apns_target(device_token()), PushMessage(payload))
    assert outcome.status == "delivered", outcome
    [push] = apns_service.notifications
    body = push.aps["alert"]["body"]
    assert body.endswith("…") and set(body[:-1]) == {"é"} and len(body) > 1800
    assert push.aps["badge"] == 5
