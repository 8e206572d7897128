"""The push job: what the message receiver hands to the push worker through the queue."""

from typing import TypedDict


class PushJob(TypedDict):
    message_id: int
    room_id: int
    sender_id: int
    # Members who were neither the sender nor viewing the room when the message was saved.
    recipient_ids: list[int]
    body: str
    created_at: str
    attempts: int
