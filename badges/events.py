"""Frames the badges app sends to clients (shared/PROTOCOL.md)."""

from typing import Any, Literal, TypedDict

from chat.events import MessageFrame, frames_message


class TotalUnreadCountUpdated(TypedDict):
    type: Literal["total-unread-count-updated"]
    totalUnreadCount: int
    totalMentionCount: int
    roomId: int
    roomUnreadCount: int
    roomMentionCount: int
    version: int


class ChatRoomUpdated(TypedDict):
    type: Literal["chat-room-updated"]
    roomId: int
    lastMessage: MessageFrame
    unreadCount: int
    mentionCount: int
    # The user's version the count was read at (the same as the total frame that may follow):
    # the frame is published from a lane, so it can reach a client after a newer snapshot,
    # whose count for the room it must not overwrite.
    version: int


def total_unread_count_updated(
    *,
    total: int,
    total_mentions: int,
    room_id: int,
    room_count: int,
    room_mentions: int,
    version: int,
) -> TotalUnreadCountUpdated:
    return {
        "type": "total-unread-count-updated",
        "totalUnreadCount": total,
        "totalMentionCount": total_mentions,
        "roomId": room_id,
        "roomUnreadCount": room_count,
        "roomMentionCount": room_mentions,
        "version": version,
    }


def room_updated(
    room_id: int, last_message: MessageFrame, count: int, mentions: int, version: int
) -> ChatRoomUpdated:
    return {
        "type": "chat-room-updated",
        "roomId": room_id,
        "lastMessage": last_message,
        "unreadCount": count,
        "mentionCount": mentions,
        "version": version,
    }


# A new message's badge frames, published as built messages (chatproject/hub.py, "Built
# messages"): the room and its last message once, then per member a row of values.
MESSAGE_BADGES = "badges.message"

MessageBadgeRow = tuple[int, int, int, int, int, bool]


def message_badge_row(
    *,
    count: int,
    mentions: int,
    version: int,
    total: int,
    total_mentions: int,
    changed: bool,
) -> MessageBadgeRow:
    """One member's values: the room's counts at `version`, and the totals when `changed`."""
    return (count, mentions, version, total, total_mentions, changed)


def message_badge_frames(shared: dict[str, Any], row: MessageBadgeRow) -> dict[str, object]:
    """What `badges_apply_message` sends each member, built from the shared part."""
    return frames_message(*badge_frames(shared["roomId"], shared["lastMessage"], row))


def badge_frames(room_id: int, last_message: MessageFrame, row: MessageBadgeRow) -> list[object]:
    """A member's `chat-room-updated` for a new message, then, if its counts changed, its
    `total-unread-count-updated`."""
    count, mentions, version, total, total_mentions, changed = row
    frames: list[object] = [room_updated(room_id, last_message, count, mentions, version)]
    if changed:
        frames.append(
            total_unread_count_updated(
                total=total,
                total_mentions=total_mentions,
                room_id=room_id,
                room_count=count,
                room_mentions=mentions,
                version=version,
            )
        )
    return frames
