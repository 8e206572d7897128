"""Badge state changes: apply chat events to the Redis counters and tell every device.

The path of a message: chat's `message_created` → `badges_apply_message` (one Lua call for
all members) → frames to each member's `user.{id}` group through `chatproject.fanout`.
"""

from badges import counters
from badges.app_settings import app_settings
from badges.counters import Badge, Status, UserState
from badges.events import ChatRoomUpdated, total_unread_count_updated
from badges.selectors import room_truths_for_users
from chat.events import MessageCreated, RoomRead, frames_message, message_frame, user_group
from chatproject import fanout
from chatproject.metrics import COUNTERS_REBUILT


def badges_rebuild_users(user_ids: list[int], *, reason: str) -> dict[int, UserState]:
    """Load users' counts from the database into Redis (a few queries and one pipeline for
    any number of users) and return them."""
    truths = room_truths_for_users(user_ids, cap=app_settings.MAX_TRACKED_UNREAD)
    counters.load_users(truths, cap=app_settings.MAX_TRACKED_UNREAD)
    COUNTERS_REBUILT.labels(reason).inc(len(user_ids))
    states = counters.user_states(
        {user_id: [room.room_id for room in rooms] for user_id, rooms in truths.items()}
    )
    # A user forgotten again in between reads as empty; the next read rebuilds it.
    return {
        user_id: state or UserState(total=0, version=0, rooms={})
        for user_id, state in states.items()
    }


def badges_rebuild_user(*, user_id: int, reason: str) -> UserState:
    return badges_rebuild_users([user_id], reason=reason)[user_id]


def badges_state(*, user_id: int, room_ids: list[int]) -> UserState:
    """The user's counts for these rooms, rebuilt from the database if Redis lost them."""
    state = counters.user_state(user_id=user_id, room_ids=room_ids)
    if state is not None:
        return state
    rebuilt = badges_rebuild_user(user_id=user_id, reason="read")
    return UserState(
        total=rebuilt.total,
        version=rebuilt.version,
        rooms={room_id: rebuilt.rooms.get(room_id, 0) for room_id in room_ids},
    )


def _rebuilt_badges(user_ids: list[int], room_id: int) -> dict[int, Badge]:
    states = badges_rebuild_users(user_ids, reason="missing") if user_ids else {}
    return {
        user_id: Badge(Status.CHANGED, state.rooms.get(room_id, 0), state.total, state.version)
        for user_id, state in states.items()
    }


def badges_apply_message(event: MessageCreated) -> None:
    """Count a committed message for its members and send each of them their new badge."""
    room_id, sender_id = event["room_id"], event["sender_id"]
    viewers = set(event["viewer_ids"])
    modes = {
        user_id: "read" if user_id in viewers else "same" if user_id == sender_id else "unread"
        for user_id in event["member_ids"]
    }
    badges = counters.apply_message(
        room_id=room_id,
        message_id=event["message_id"],
        modes=modes,
        cap=app_settings.MAX_TRACKED_UNREAD,
    )
    missing = [user_id for user_id, badge in badges.items() if badge.status is Status.MISSING]
    badges.update(_rebuilt_badges(missing, room_id))
    last_message = message_frame(event)
    sends = []
    for user_id, badge in badges.items():
        room_updated: ChatRoomUpdated = {
            "type": "chat-room-updated",
            "roomId": room_id,
            "lastMessage": last_message,
            "unreadCount": badge.room_count,
        }
        frames: list[object] = [room_updated]
        if badge.status is Status.CHANGED:
            frames.append(_total_frame(badge, room_id))
        sends.append((user_group(user_id), frames_message(*frames)))
    fanout.publish(sends, committed_at=event["committed_at"])


def badges_apply_read(event: RoomRead) -> Badge:
    """Read up to a message: drop those counts and update every device of the user."""
    user_id, room_id = event["user_id"], event["room_id"]
    badge = counters.apply_read(
        user_id=user_id,
        room_id=room_id,
        read_upto=event["read_upto"],
        cap=app_settings.MAX_TRACKED_UNREAD,
    )
    if badge.status is Status.MISSING:
        badge = _rebuilt_badges([user_id], room_id)[user_id]
    if badge.status is Status.CHANGED:
        fanout.publish([(user_group(user_id), frames_message(_total_frame(badge, room_id)))])
    return badge


def badges_forget(user_ids: list[int]) -> None:
    """Someone changed the truth behind these users' counts outside the event flow."""
    counters.forget_users(sorted(set(user_ids)))


def _total_frame(badge: Badge, room_id: int) -> object:
    return total_unread_count_updated(
        total=badge.total, room_id=room_id, room_count=badge.room_count, version=badge.version
    )
