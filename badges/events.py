"""Frames the badges app sends to clients (shared/PROTOCOL.md)."""

from typing import Literal, TypedDict

from chat.events import MessageFrame


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
