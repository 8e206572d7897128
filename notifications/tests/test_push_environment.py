"""A process configured by the environment alone (as a worker is) reaches both push doubles."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from notifications.tests.doubles.apns import ApnsService, device_token
from notifications.tests.doubles.fixtures import VapidKeys
from notifications.tests.doubles.webpush import WebPushService

SCRIPT = """
import asyncio, json, sys
import django
django.setup()
from notifications.apns import ApnsBackend
from notifications.backends import PushMessage, PushTarget
from notifications.webpush import WebPushBackend

async def main():
    outcomes = {}
    for kind, backend_class in (("webpush", WebPushBackend), ("apns", ApnsBackend)):
        backend = backend_class()
        target = PushTarget(**json.loads(sys.argv[1])[kind])
        message = PushMessage({"type": "badge", "badge": 2}, silent=True, topic="badge")
        outcomes[kind] = (await backend.send(target, message)).status
        await backend.aclose()
    print(json.dumps(outcomes))

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_subprocess_configured_by_environment_pushes_to_both(
    vapid_keys: VapidKeys, webpush_service: WebPushService, apns_service: ApnsService
) -> None:
    token = device_token()
    targets = {
        "webpush": vars(webpush_service.subscribe().target(1)),
        "apns": {"device_id": 2, "kind": "apns", "address": token},
    }
    environment = {
        **os.environ,
        **apns_service.environment(),
        "WEBPUSH_VAPID_PRIVATE_KEY": vapid_keys.private_key,
        "WEBPUSH_VAPID_SUBJECT": "mailto:push-tests@example.com",
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "REDIS_URL": settings.REDIS_URL,  # named, never used: no embedded Redis to start
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(targets)],
        env=environment,
        cwd=Path(settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    outcomes = json.loads(result.stdout.splitlines()[-1])
    assert outcomes == {"webpush": "delivered", "apns": "delivered"}
    [push] = webpush_service.pushes
    assert push.payload == {"type": "badge", "badge": 2}
    [notification] = apns_service.notifications
    assert (notification.device_token, notification.aps) == (token, {"badge": 2})
