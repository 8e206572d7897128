"""Settings of the daphne that `bench.stalled` (and its test) drives: the project's, with the
rate limit off (one sender at 100 msg/s) and cheap password hashing for the seeded users."""

import os

from chatproject.settings import *  # noqa: F403

CHAT_RATE_LIMIT_MESSAGES = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# How long a client closed as slow has to read up to its close frame (see chatproject.backpressure).
CHAT_SLOW_CONSUMER_CLOSE_GRACE_SECONDS = float(
    os.environ.get("CHAT_SLOW_CONSUMER_CLOSE_GRACE_SECONDS", "10")
)
