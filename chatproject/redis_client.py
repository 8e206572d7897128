"""The process-wide synchronous Redis client shared by the apps' key-family modules.

redis-py's client is thread-safe and pools its connections, so the ORM threads of daphne,
management commands and the admin all share one pool. Each app builds its own keys (one
module per key family) under settings.REDIS_KEY_PREFIX.
"""

from functools import cache

import redis
from django.conf import settings


@cache
def redis_connection() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
    )


def prefixed(*parts: object) -> str:
    """`prefixed("badges", "user", 42)` → "chat:badges:user:42"."""
    return ":".join([settings.REDIS_KEY_PREFIX, *(str(part) for part in parts)])
