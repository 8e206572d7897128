"""The sequential baseline: the original design's message flow, beside the product.

Served on /ws/baseline/ by the same daphne process (bench/asgi.py), on the same models,
database and channel layer. On `send-message` it does everything in the consumer, one step
after another, before it answers:

1. save the message (`bulk_create`, which sends no post_save: the product's receivers and
   its Redis counters stay out of the baseline's way);
2. `chat-message` to the sender's connection (the echo);
3. `chat-room-updated` to each member, one `group_send` per member;
4. each recipient's unread counts with a database query (messages after the read pointer,
   not their own), one query per recipient;
5. one push per recipient, awaited one after another (notifications' DelayedLoggingPushBackend,
   NOTIFICATIONS_PUSH_DELAY_SECONDS each);
6. `total-unread-count-updated` to each recipient, one `group_send` per recipient;
7. `message-sent` to the sender: the whole message is done.

Frames use the product's names and shapes, so the same client code measures both.
"""

import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Count, F, Q

from chat.models import Membership, Message
from chat.selectors import iso_utc, message_dict
from notifications.backends import DelayedLoggingPushBackend, PushMessage, PushTarget


def baseline_group(user_id: int) -> str:
    return f"baseline.user.{user_id}"


def _save(room_id: int, sender_id: int, body: str, client_message_id: str) -> Message:
    if not Membership.objects.filter(room_id=room_id, user_id=sender_id).exists():
        raise PermissionError(f"user {sender_id} is not in room {room_id}")
    (message,) = Message.objects.bulk_create(
        [
            Message(
                room_id=room_id,
                sender_id=sender_id,
                body=body,
                client_message_id=client_message_id,
            )
        ]
    )
    return message


def _member_ids(room_id: int) -> list[int]:
    return list(Membership.objects.filter(room_id=room_id).values_list("user_id", flat=True))


def _unread_of(user_id: int) -> dict[int, int]:
    """{room: unread} for every room of the user: the original design's COUNT query."""
    rows = (
        Membership.objects.filter(user_id=user_id)
        .annotate(
            unread=Count(
                "room__messages",
                filter=Q(room__messages__id__gt=F("last_read_message_id"))
                & ~Q(room__messages__sender_id=user_id),
            )
        )
        .values_list("room_id", "unread")
    )
    return dict(rows)


class BaselineConsumer(AsyncJsonWebsocketConsumer):
    user_id: int

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        self.user_id = user.pk
        await self.channel_layer.group_add(baseline_group(self.user_id), self.channel_name)
        await self.accept()
        await self.send_json(
            {"type": "unread-state", "totalUnreadCount": 0, "version": 0, "rooms": []}
        )

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "user_id"):
            await self.channel_layer.group_discard(baseline_group(self.user_id), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "send-message":
            await self._send_message(content)
        elif kind == "join-room":
            await self.send_json({"type": "joined-room", "roomId": content.get("roomId")})
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "code": "unknown_type", "ref": kind})

    async def _send_message(self, frame: dict[str, Any]) -> None:
        room_id, body = int(frame["roomId"]), str(frame["message"])
        client_message_id = str(frame["clientMessageId"])
        message = await database_sync_to_async(_save)(
            room_id, self.user_id, body, client_message_id
        )
        shown = message_dict(message)
        await self.send_json({"type": "chat-message", "roomId": room_id, "message": shown})
        members = await database_sync_to_async(_member_ids)(room_id)
        recipients = [user_id for user_id in members if user_id != self.user_id]
        for user_id in members:
            room_updated = {"type": "chat-room-updated", "roomId": room_id, "lastMessage": shown}
            await self.channel_layer.group_send(
                baseline_group(user_id), {"type": "baseline.frame", "frame": room_updated}
            )
        counts = {}
        for user_id in recipients:
            counts[user_id] = await database_sync_to_async(_unread_of)(user_id)
        backend = DelayedLoggingPushBackend()
        for user_id in recipients:
            payload = {
                "type": "chat-message",
                "roomId": room_id,
                "messageId": message.pk,
                "title": f"room {room_id}",
                "body": body[:200],
                "badge": sum(counts[user_id].values()),
            }
            await backend.send(
                PushTarget(device_id=user_id, kind="webpush", address=f"user {user_id}"),
                PushMessage(payload=payload, urgency="high"),
            )
        for user_id in recipients:
            badge = {
                "type": "total-unread-count-updated",
                "totalUnreadCount": sum(counts[user_id].values()),
                "roomId": room_id,
                "roomUnreadCount": counts[user_id].get(room_id, 0),
                "version": time.time_ns() // 1000,
            }
            await self.channel_layer.group_send(
                baseline_group(user_id), {"type": "baseline.frame", "frame": badge}
            )
        await self.send_json(
            {
                "type": "message-sent",
                "roomId": room_id,
                "clientMessageId": client_message_id,
                "messageId": message.pk,
                "createdAt": iso_utc(message.created_at),
            }
        )

    async def baseline_frame(self, event: dict[str, Any]) -> None:
        await self.send_json(event["frame"])
