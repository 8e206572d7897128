"""Who is viewing which room: the `chat:viewers:{room}` key family, owned here alone.

One sorted set per room; a member is "<user id>:<channel name>" (one per connection) and its
score the time it expires. Connections refresh their entries while open, so a process that
dies without a disconnect leaves nothing behind for longer than the TTL.

`connected_processes` answers "is this user connected at all" from the channel layer instead.
"""

import time

from chat.app_settings import app_settings
from chat.events import user_group
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


def viewers_by_room(room_ids: list[int]) -> dict[int, set[int]]:
    """`viewer_ids` of several rooms in one pipeline (the admin shows a page of them)."""
    pipe = redis_connection().pipeline(transaction=False)
    now = time.time()
    for room_id in room_ids:
        pipe.zrangebyscore(_key(room_id), now, "+inf")
    return {
        room_id: {_user_of(entry) for entry in entries}
        for room_id, entries in zip(room_ids, pipe.execute(), strict=True)
    }


def connected_processes(user_ids: list[int]) -> dict[int, int]:
    """How many server processes hold at least one open connection of each user.

    Read from the channel layer rather than kept here: every connection is in its user's
    group, and a process subscribes to a group while it holds a member of it, so the number
    of subscribers is exact and needs no bookkeeping on connect or disconnect.
    """
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    counts = layer.group_subscriber_counts([user_group(user_id) for user_id in user_ids])
    return {user_id: counts.get(user_group(user_id), 0) for user_id in user_ids}


def _user_of(entry: str | bytes) -> int:
    # Decoded or not, whichever way the shared client is configured.
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split(":", 1)[0])


def viewer_ids(room_id: int) -> set[int]:
    """Users with at least one live connection viewing the room."""
    entries: list[bytes] = redis_connection().zrangebyscore(_key(room_id), time.time(), "+inf")  # type: ignore[assignment]
    return {int(entry.split(b":", 1)[0]) for entry in entries}
