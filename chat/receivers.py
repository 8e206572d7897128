"""Receivers of the chat app's own model and event signals."""

from typing import Any

from chat import services
from chat.events import MessageCreated, frames_message, message_frame, room_group
from chat.models import Message
from chatproject import fanout
from chatproject.lanes import on_lane


def message_saved(sender: type[Message], instance: Message, created: bool, **kwargs: Any) -> None:
    # Fixtures (raw) are not new messages; updates of old ones change no count.
    if created and not kwargs.get("raw", False):
        services.message_after_insert(instance)


@on_lane("chat.broadcast_chat_message")
def broadcast_chat_message(sender: Any, event: MessageCreated, **kwargs: Any) -> None:
    """`chat-message` to every connection viewing the room, the sender's included."""
    frame = {"type": "chat-message", "roomId": event["room_id"], "message": message_frame(event)}
    fanout.publish([(room_group(event["room_id"]), frames_message(frame))])
