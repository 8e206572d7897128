"""The worker as a process: killed with SIGKILL mid-batch, started again, stopped by SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from chat.services import message_send
from chat.tests.helpers import make_room, make_user
from chat.tests.processes import database_url_of_tests
from chatproject.redis_client import prefixed, redis_connection
from notifications import queue
from notifications.models import Device, PushDelivery
from notifications.tests.doubles.fixtures import VapidKeys
from notifications.tests.doubles.webpush import WebPushService
from notifications.tests.helpers import make_device

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(settings.BASE_DIR)


def _spawn(
    count_key: str,
    delay: float,
    concurrency: int,
    log: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifications.tests.worker_settings",
        "DATABASE_URL": database_url_of_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        "PUSH_GRACE_SECONDS": "0.2",
        "PUSH_COUNT_KEY": count_key,
        "PUSH_COUNT_DELAY": str(delay),
        "LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "run_push_worker", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {seconds} s")


def _kill_once_pushed(count_key: str, pushed: int, concurrency: int, log: Path) -> None:
    """A worker whose pushes take 30 s, SIGKILLed once `pushed` of them reached the service
    (received there, not yet acknowledged to the worker)."""
    first = _spawn(count_key, delay=30, concurrency=concurrency, log=log)
    try:
        _wait_for(lambda: redis_connection().llen(count_key) >= pushed, 60, "pushes arrived")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)


def _restart_until_all_pushed(
    count_key: str, total: int, concurrency: int, log: Path
) -> Counter[str]:
    """A second worker runs until `total` pushes were counted and the queue is empty (the killed
    worker's jobs are swept back once their heartbeat is 2 s old, and run again), then stops on
    SIGTERM. What the service counted, push by push."""
    second = _spawn(count_key, delay=0, concurrency=concurrency, log=log)
    try:
        _wait_for(lambda: redis_connection().llen(count_key) >= total, 60, "everything pushed")
        _wait_for(lambda: queue.queue_depth() == 0, 60, "the swept jobs ran again")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
    # The project's client answers bytes (django-redis, chatproject.redis_client).
    return Counter(
        entry.decode() if isinstance(entry, bytes) else entry
        for entry in redis_connection().lrange(count_key, 0, -1)
    )


def test_a_worker_killed_mid_batch_and_restarted_pushes_everything_exactly_once(
    tmp_path: Path,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    phone = make_device(bob)
    ids = [
        message_send(
            sender_id=alice.pk, room_id=room.pk, body=f"m{n}", client_message_id=f"c{n}"
        ).message.pk
        for n in range(20)
    ]
    count_key = prefixed("tests", "pushed")
    log = tmp_path / "worker.log"

    # Four pushes at a time: killed while the first four wait for their answers.
    _kill_once_pushed(count_key, 4, concurrency=4, log=log)
    assert redis_connection().llen(count_key) == 4

    counted = _restart_until_all_pushed(count_key, 20, concurrency=4, log=log)
    assert counted == Counter({f"{message_id}:{phone.pk}": 1 for message_id in ids})
    statuses = Counter(PushDelivery.objects.values_list("status", flat=True))
    # Claimed by the killed worker and answered by nobody: recorded as such, never resent.
    assert statuses == {"sent": 16, "sending": 4}
    assert "push worker stopped" in log.read_text()


def test_a_message_to_many_devices_killed_mid_batch_sends_the_rest_after_restart(
    tmp_path: Path,
) -> None:
    """One message, ten devices, two sends at a time: the killed worker had claimed only the two
    in flight, so the swept job's re-run sends the other eight, and nothing twice."""
    alice = make_user("alice")
    people = [make_user(f"member{n}") for n in range(10)]
    room = make_room("general", [alice, *people])
    devices = [make_device(person) for person in people]
    message_id = message_send(
        sender_id=alice.pk, room_id=room.pk, body="to everyone", client_message_id="c1"
    ).message.pk
    count_key = prefixed("tests", "pushed")
    log = tmp_path / "worker.log"

    _kill_once_pushed(count_key, 2, concurrency=2, log=log)
    assert PushDelivery.objects.filter(status="pending").count() == 8

    counted = _restart_until_all_pushed(count_key, 10, concurrency=2, log=log)
    assert counted == Counter({f"{message_id}:{device.pk}": 1 for device in devices})
    statuses = Counter(PushDelivery.objects.values_list("status", flat=True))
    assert statuses == {"sent": 8, "sending": 2}


def test_a_webpush_worker_killed_mid_batch_and_restarted_delivers_each_push_once(
    tmp_path: Path, webpush_service: WebPushService, vapid_keys: VapidKeys
) -> None:
    """The same drill with the real WebPushBackend: counted at the Web Push double, which
    checks each push's VAPID token and decrypts its payload with the browser's key."""
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    subscription = webpush_service.subscribe()
    browser = Device.objects.create(
        user=bob,
        kind="webpush",
        address=subscription.endpoint,
        keys={"p256dh": subscription.p256dh, "auth": subscription.auth},
    )
    ids = [
        message_send(
            sender_id=alice.pk, room_id=room.pk, body=f"m{n}", client_message_id=f"c{n}"
        ).message.pk
        for n in range(20)
    ]
    env = {
        "NOTIFICATIONS_PUSH_BACKEND": "notifications.webpush.WebPushBackend",
        "WEBPUSH_VAPID_PRIVATE_KEY": vapid_keys.private_key,
        "WEBPUSH_VAPID_SUBJECT": "mailto:push-tests@example.com",
    }
    log = tmp_path / "worker.log"
    unused = prefixed("tests", "unused")

    # The service holds its answers 20 s: kill the worker while the first four wait.
    webpush_service.delay_seconds = 20
    first = _spawn(unused, delay=0, concurrency=4, log=log, extra_env=env)
    try:
        _wait_for(lambda: len(webpush_service.pushes) >= 4, 60, "the first pushes arrived")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert len(webpush_service.pushes) == 4

    webpush_service.delay_seconds = 0
    second = _spawn(unused, delay=0, concurrency=4, log=log, extra_env=env)
    try:
        _wait_for(lambda: len(webpush_service.pushes) >= 20, 60, "every message was pushed")
        _wait_for(lambda: queue.queue_depth() == 0, 60, "the swept jobs ran again")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
    counted = Counter(
        (push.subscription_id, push.payload["messageId"]) for push in webpush_service.pushes
    )
    assert counted == Counter({(subscription.id, message_id): 1 for message_id in ids})
    assert {push.payload["type"] for push in webpush_service.pushes} == {"chat-message"}
    statuses = Counter(PushDelivery.objects.filter(device=browser).values_list("status", flat=True))
    assert statuses == {"sent": 16, "sending": 4}
    assert "push worker stopped" in log.read_text()
