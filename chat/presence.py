"""Who is viewing which room: the `chat:viewers:{room}` key family, owned here alone.

One sorted set per room; a member is "<user id>:<channel name>" (one per connection) and its
score the time it expires. Connections refresh their entries while open, so a process that
dies without a disconnect leaves nothing behind for longer than the TTL.
"""

import time

from chat.app_settings import app_settings
from chatproject.redis_client import prefixed, redis_connection


def _key(room_id: int) -> str:
    return prefixed("chat", "viewers", room_id)


def viewing_add(*, room_ids: list[int], user_id: int, channel_name: str) -> None:
    """Mark (or refresh) this connection as viewing each room."""
    if not room_ids:
        return
    expires = time.time() + app_settings.PRESENCE_TTL_SECONDS
    pipe = redis_connection().pipeline(transaction=False)
    for room_id in room_ids:
        pipe.zadd(_key(room_id), {f"{user_id}:{channel_name}": expires})
        pipe.expire(_key(room_id), app_settings.PRESENCE_TTL_SECONDS)
    pipe.execute()


def viewing_remove(*, room_ids: list[int], user_id: int, channel_name: str) -> None:
    if not room_ids:
        return
    pipe = redis_connection().pipeline(transaction=False)
    for room_id in room_ids:
        pipe.zrem(_key(room_id), f"{user_id}:{channel_name}")
    pipe.execute()


def viewer_ids(room_id: int) -> set[int]:
    """Users with at least one live connection viewing the room."""
    entries: list[bytes] = redis_connection().zrangebyscore(_key(room_id), time.time(), "+inf")  # type: ignore[assignment]
    return {int(entry.split(b":", 1)[0]) for entry in entries}
