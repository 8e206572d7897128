"""Receivers of the chat app's own model and event signals."""

from typing import Any

from django.contrib.auth import SESSION_KEY

from chat import revocation, services
from chat.events import (
    MessageCreated,
    MessageEdited,
    close_connections,
    frames_message,
    message_frame,
    room_group,
    user_group,
)
from chat.models import AuthToken, Membership, Message
from chatproject import fanout
from chatproject.commit import on_commit_robust
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


def broadcast_message_edited(sender: Any, event: MessageEdited, **kwargs: Any) -> None:
    """`chat-message-edited` to every connection viewing the room."""
    frame = {
        "type": "chat-message-edited",
        "roomId": event["room_id"],
        "message": {
            "id": event["message_id"],
            "senderId": event["sender_id"],
            "body": event["body"],
            "createdAt": event["created_at"],
            "editedAt": event["edited_at"],
        },
    }
    fanout.publish([(room_group(event["room_id"]), frames_message(frame))])


def message_deleted(sender: type[Message], instance: Message, **kwargs: Any) -> None:
    """`chat-message-deleted` to every connection viewing the room, once the delete commits."""
    frame = {"type": "chat-message-deleted", "roomId": instance.room_id, "messageId": instance.pk}
    send = (room_group(instance.room_id), frames_message(frame))
    on_commit_robust(fanout.publish, [send])


def membership_deleted(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    """A member left or was removed: their connections stop viewing the room (no more of its
    frames); the fresh snapshot without it comes from the badges app."""
    left = {"type": "chat.left", "room_id": instance.room_id}
    send = (user_group(instance.user_id), left)
    on_commit_robust(fanout.publish, [send])


# --- closing connections whose credential went away (chat.revocation) -------------------------
# Whoever makes the change (admin, shell, a service), a model signal sees it; only
# QuerySet.update and raw SQL do not (README, "Staff admin").


def user_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Every save of an inactive user closes its connections, without comparing with the stored
    # state: an inactive user can have no legitimate connection (the handshake refuses them),
    # and this also catches an instance built by hand rather than loaded.
    if not instance.is_active and not kwargs.get("raw", False):
        revocation.close_all_on_commit([instance.pk])


def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    revocation.close_all_on_commit([instance.pk])


def token_saved(sender: Any, instance: AuthToken, **kwargs: Any) -> None:
    # A token revoked or expired by an edit (the admin's change form) closes what it opened.
    if not instance.is_active and not kwargs.get("raw", False):
        revocation.close_on_commit([(instance.user_id, close_connections(token_ids=[instance.pk]))])


def token_deleted(sender: Any, instance: AuthToken, **kwargs: Any) -> None:
    revocation.close_on_commit([(instance.user_id, close_connections(token_ids=[instance.pk]))])


def session_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Sent before the session is flushed, so its key still names the connections it opened.
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        revocation.close_on_commit([(user.pk, close_connections(session_keys=[session_key]))])


def session_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    # A session row deleted (logout's flush, `clearsessions` of expired ones, a login that
    # cycles the key, staff deleting it): its connections lose their credential.
    user_id = instance.get_decoded().get(SESSION_KEY)
    if user_id is not None:
        revocation.close_on_commit(
            [(int(user_id), close_connections(session_keys=[instance.session_key]))]
        )
