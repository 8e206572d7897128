"""Receiver of chat's `message_created`: hand a push job to the worker, never wait for it."""

from typing import Any

from chat.events import MessageCreated
from chatproject.lanes import on_lane
from notifications.events import PushJob
from notifications.queue import push_enqueue


@on_lane("notifications.message_created")
def on_message_created(sender: Any, event: MessageCreated, **kwargs: Any) -> None:
    skip = {event["sender_id"], *event["viewer_ids"]}
    recipients = [user_id for user_id in event["member_ids"] if user_id not in skip]
    if not recipients:
        return
    push_enqueue(
        PushJob(
            message_id=event["message_id"],
            room_id=event["room_id"],
            sender_id=event["sender_id"],
            recipient_ids=recipients,
            body=event["body"][:200],
            created_at=event["created_at"],
            attempts=0,
        )
    )
