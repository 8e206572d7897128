"""Payloads of the pushes (shared/PROTOCOL.md, "Web Push payloads")."""

from typing import Literal, TypedDict


class ChatMessagePush(TypedDict):
    type: Literal["chat-message"]
    roomId: int
    messageId: int
    title: str
    body: str
    badge: int  # the recipient's absolute total unread count when the push was sent
    # Whether the message mentions the recipient (`@username` or `@room`): a client may show it
    # louder, and at level `mentions` it is why the push came at all.
    mention: bool


class BadgePush(TypedDict):
    type: Literal["badge"]
    badge: int
