"""Payloads of the pushes (shared/PROTOCOL.md, "Web Push payloads")."""

from typing import Literal, TypedDict


class ChatMessagePush(TypedDict):
    type: Literal["chat-message"]
    roomId: int
    messageId: int
    title: str
    body: str
    badge: int  # the recipient's absolute total unread count when the push was sent


class BadgePush(TypedDict):
    type: Literal["badge"]
    badge: int
