"""Per-user send rate limit: the `chat:rate:{user}:{window}` key family, owned here alone.

A fixed window counter: one INCR per new message, shared by every process and by the
WebSocket and HTTP paths alike.
"""

import time

from chat.app_settings import app_settings
from chatproject.redis_client import prefixed, redis_connection


def message_allowed(user_id: int) -> bool:
    limit = app_settings.RATE_LIMIT_MESSAGES
    if limit <= 0:
        return True
    window = app_settings.RATE_LIMIT_WINDOW_SECONDS
    key = prefixed("chat", "rate", user_id, int(time.time() // window))
    pipe = redis_connection().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, window * 2)
    count, _ = pipe.execute()
    return int(count) <= limit
