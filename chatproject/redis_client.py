"""The process-wide Redis clients, all configured by one setting (REDIS_URL, through CACHES).

The synchronous client is django-redis' own (`get_redis_connection("default")`): the cache,
the counters, presence, the rate limit and the push queue share its pool. It answers bytes
(the cache stores pickles), so key-family modules decode what they read. redis-py's client is
thread-safe and pools its connections, so the ORM thread, the receiver lanes, management
commands and the admin all share it. Each app builds its own keys (one module per key family)
under settings.REDIS_KEY_PREFIX.
"""

from functools import cache
from typing import Any

import redis
from django.conf import settings
from django_redis import get_redis_connection
from redis.asyncio import Redis as AsyncRedis


@cache
def redis_connection() -> redis.Redis:
    return get_redis_connection("default")


def async_redis_connection(**overrides: Any) -> AsyncRedis:
    """A new asyncio client for one event loop (the push worker, the Redis watch)."""
    cache_config: dict[str, Any] = settings.CACHES["default"]
    options = cache_config["OPTIONS"]
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": options["SOCKET_CONNECT_TIMEOUT"],
        "socket_timeout": options["SOCKET_TIMEOUT"],
    }
    kwargs.update(overrides)
    return AsyncRedis.from_url(cache_config["LOCATION"], **kwargs)


def prefixed(*parts: object) -> str:
    """`prefixed("badges", "user", 42)` → "chat:badges:user:42"."""
    return ":".join([settings.REDIS_KEY_PREFIX, *(str(part) for part in parts)])
