"""Typed payloads: the signals' events and the frames of shared/PROTOCOL.md."""

from typing import Literal, TypedDict


class MessageCreated(TypedDict):
    message_id: int
    room_id: int
    sender_id: int
    body: str
    created_at: str
    # Every member of the room when the message was saved, the sender included.
    member_ids: list[int]
    # Members with a connection viewing the room then: for them the message is read.
    viewer_ids: list[int]
    # Members it mentions (chat.mentions), the sender never among them.
    mentioned_ids: list[int]
    # time.perf_counter() at commit, for the badge-latency histogram (same process only).
    committed_at: float


class MessageEdited(TypedDict):
    message_id: int
    room_id: int
    sender_id: int
    body: str
    created_at: str
    edited_at: str
    member_ids: list[int]  # the room's members when it was edited, the sender included
    # Members the new text mentions and the old did not, and the other way round.
    mentions_added: list[int]
    mentions_removed: list[int]


class LevelChanged(TypedDict):
    user_id: int
    room_id: int
    level: str


class RoomRead(TypedDict):
    user_id: int
    room_id: int
    read_upto: int


class MessageFrame(TypedDict):
    id: int
    senderId: int
    body: str
    createdAt: str


class ChatMessageFrame(TypedDict):
    type: Literal["chat-message"]
    roomId: int
    message: MessageFrame


class JoinedRoomFrame(TypedDict):
    type: Literal["joined-room"]
    roomId: int
    unreadCount: int
    totalUnreadCount: int
    totalMentionCount: int


class LeftRoomFrame(TypedDict):
    type: Literal["left-room"]
    roomId: int


class MessageSentFrame(TypedDict):
    type: Literal["message-sent"]
    roomId: int
    clientMessageId: str
    messageId: int
    createdAt: str


class RoomUnread(TypedDict):
    roomId: int
    unreadCount: int
    mentionCount: int
    level: str
    lastMessageId: int


class UnreadStateFrame(TypedDict):
    type: Literal["unread-state"]
    totalUnreadCount: int
    totalMentionCount: int
    version: int
    rooms: list[RoomUnread]


class ErrorFrame(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    ref: str | None


def message_frame(event: MessageCreated) -> MessageFrame:
    return {
        "id": event["message_id"],
        "senderId": event["sender_id"],
        "body": event["body"],
        "createdAt": event["created_at"],
    }


def user_group(user_id: int) -> str:
    """Channel-layer group of every connection of one user."""
    return f"user.{user_id}"


def room_group(room_id: int) -> str:
    """Channel-layer group of the connections viewing one room."""
    return f"room.{room_id}"


def frames_message(*frames: object) -> dict[str, object]:
    """A channel-layer message that asks each receiving consumer to forward `frames`."""
    return {"type": "chat.frames", "frames": list(frames)}


# The application close code of a connection whose credential was revoked (README, "Staff
# admin"): the client should not reconnect with the same token or session.
CLOSE_REVOKED = 4003


class CloseConnections(TypedDict):
    """Channel-layer event to a user's group: close the connections these credentials opened.

    A connection closes (code 4003) when `all` is true (the user was deactivated or deleted),
    when it authenticated with one of `token_ids`, or by session with one of `session_keys`.
    """

    type: Literal["chat.close"]
    all: bool
    token_ids: list[int]
    session_keys: list[str]


def close_connections(
    *,
    everything: bool = False,
    token_ids: list[int] | None = None,
    session_keys: list[str] | None = None,
) -> CloseConnections:
    return {
        "type": "chat.close",
        "all": everything,
        "token_ids": token_ids or [],
        "session_keys": session_keys or [],
    }
