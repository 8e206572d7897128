"""Receivers of chat's signals: record the push intent with the message, wake the relay, and
owe a silent badge update after a read. None of them waits for Redis on the sender's path
but the outbox insert, which is the point: it commits or rolls back with the message."""

from datetime import datetime
from typing import Any

from chat.events import MessageCreated, MessageEdited, RoomRead
from chat.models import Message
from chatproject.lanes import on_lane
from notifications import queue, services
from notifications.models import PushOutbox


# Inline, inside the message's transaction (post_save): no lane, no after-commit.
def message_saved(sender: type[Message], instance: Message, created: bool, **kwargs: Any) -> None:
    if created and not kwargs.get("raw", False):
        PushOutbox.objects.create(message_id=instance.pk, created_at=instance.created_at)


@on_lane("notifications.message_created")
def on_message_created(sender: Any, event: MessageCreated, **kwargs: Any) -> None:
    # Only a wake-up call: the relay also polls, so a nudge lost to a Redis outage costs a
    # second, not a push.
    if len(event["member_ids"]) > 1:
        queue.relay_nudge()


@on_lane("notifications.message_edited")
def on_message_edited(sender: Any, event: MessageEdited, **kwargs: Any) -> None:
    # After commit (chat sends it so), unlike the message's own outbox row: an edit has no
    # post_save to ride on. A process killed between the edit's commit and this insert loses
    # the push of that edit's mentions, not the message's own pushes.
    if services.edit_mentions_push_plan(
        message_id=event["message_id"],
        room_id=event["room_id"],
        mentioned_ids=event["mentions_added"],
        edited_at=datetime.fromisoformat(event["edited_at"]),
    ):
        queue.relay_nudge()


@on_lane("notifications.room_read")
def on_room_read(sender: Any, event: RoomRead, **kwargs: Any) -> None:
    queue.badge_request(event["user_id"])
