"""Settings of a push worker that tests run as a subprocess: the project's, plus the knobs
the tests turn through the environment."""

import os

from chatproject.settings import *  # noqa: F403

NOTIFICATIONS_PUSH_BACKEND = os.environ.get(
    "NOTIFICATIONS_PUSH_BACKEND", "notifications.tests.counting.CountingBackend"
)
NOTIFICATIONS_JOB_HEARTBEAT_SECONDS = int(os.environ.get("NOTIFICATIONS_JOB_HEARTBEAT_SECONDS", 2))
NOTIFICATIONS_SWEEP_SECONDS = int(os.environ.get("NOTIFICATIONS_SWEEP_SECONDS", 1))
NOTIFICATIONS_RELAY_POLL_SECONDS = 0.2
