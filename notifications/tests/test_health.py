"""/healthz shows the push worker's heartbeat and the queue depth; backends by device kind."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client, override_settings

from chat.tests.helpers import eventually
from notifications import queue
from notifications.app_settings import app_settings
from notifications.backends import DeviceBackends, LoggingPushBackend
from notifications.tests.helpers import RecordingBackend, running_worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_says_when_no_worker_ever_beat(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["push"] == {
        "worker": "none",
        "heartbeatAgeSeconds": None,
        "queueDepth": 0,
    }


async def test_healthz_shows_a_running_worker_and_the_queue_depth() -> None:
    push_queue = queue.push_queue()
    for n in range(3):  # due in an hour: they wait in the queue
        await push_queue.enqueue_push(queue.RETRY_JOB, key=f"t{n}", at=4e9, delivery_id=n)
    await push_queue.disconnect()
    async with running_worker(RecordingBackend()):
        await eventually(lambda: queue.heartbeat_age_seconds() is not None)
        report = await database_sync_to_async(lambda: Client().get("/healthz").json())()
    assert report["push"]["worker"] == "ok"
    assert 0 <= report["push"]["heartbeatAgeSeconds"] < 30
    assert report["push"]["queueDepth"] == 3
    assert (report["database"], report["redis"]) == ("ok", "ok")


def test_unconfigured_kinds_log_and_configured_ones_load_the_real_protocol() -> None:
    with override_settings(WEBPUSH_VAPID_PRIVATE_KEY="", APNS_KEY_FILE=""):
        assert set(app_settings.PUSH_BACKENDS.values()) == {
            "notifications.backends.LoggingPushBackend"
        }
        assert isinstance(DeviceBackends().for_kind("apns"), LoggingPushBackend)
    with override_settings(WEBPUSH_VAPID_PRIVATE_KEY="key", APNS_KEY_FILE="/k.p8"):
        assert app_settings.PUSH_BACKENDS == {
            "webpush": "notifications.webpush.WebPushBackend",
            "apns": "notifications.apns.ApnsBackend",
        }
    mapping = {"webpush": "notifications.backends.FailingPushBackend"}
    with override_settings(NOTIFICATIONS_PUSH_BACKENDS=mapping):
        assert app_settings.PUSH_BACKENDS == mapping
        with pytest.raises(LookupError):
            DeviceBackends().for_kind("apns")
