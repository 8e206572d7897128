"""State changes of the chat app: check access, write, announce after commit.

Every function here is synchronous ORM code; consumers call it through
`database_sync_to_async`, views and commands directly.
"""

import functools
import logging
import time
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models.sql.subqueries import UpdateQuery
from django.utils import timezone
from redis.exceptions import RedisError

from chat import mentions, presence, ratelimit
from chat.app_settings import app_settings
from chat.errors import BadRequest, NotAllowed, NotFound, RateLimited, TooLarge
from chat.events import LevelChanged, MessageCreated, MessageEdited, RoomRead
from chat.models import Level, Membership, Message, MessageMention
from chat.selectors import (
    MAX_ID,
    iso_utc,
    latest_message_id,
    member_ids,
    membership_for,
    message_by_client_id,
)
from chat.signals import (
    message_created,
    message_edited,
    room_level_changed,
    room_marked_unread,
    room_read,
)
from chatproject.commit import on_commit_robust
from chatproject.redis_watch import redis_unreachable

logger = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_ID_LENGTH = 100


@dataclass(frozen=True)
class SentMessage:
    message: Message
    created: bool  # False when the clientMessageId was seen before: nothing new was saved


def _check_body(body: object) -> str:
    if not isinstance(body, str) or not body.strip():
        raise BadRequest("message must be a non-empty string")
    if "\x00" in body:
        # PostgreSQL cannot store NUL in text; refuse it on every database alike.
        raise BadRequest("message must not contain NUL characters")
    if len(body) > app_settings.MAX_MESSAGE_LENGTH:
        raise TooLarge(f"message is over {app_settings.MAX_MESSAGE_LENGTH} characters")
    return body


def message_send(*, sender_id: int, room_id: int, body: str, client_message_id: str) -> SentMessage:
    """Save a message once per (sender, clientMessageId); a repeat returns the first one."""
    _check_body(body)
    if "\x00" in str(client_message_id):
        raise BadRequest("clientMessageId must not contain NUL characters")
    if not isinstance(client_message_id, str) or not (
        0 < len(client_message_id) <= MAX_CLIENT_MESSAGE_ID_LENGTH
    ):
        raise BadRequest(
            f"clientMessageId must be a string of 1 to {MAX_CLIENT_MESSAGE_ID_LENGTH} characters"
        )
    # The hot path is two statements: the member list (which is also the membership check and
    # the event's recipients) and the insert. Repeats are rare: the unique constraint finds them.
    members = member_ids(room_id) if 0 < room_id <= MAX_ID else []
    if sender_id not in members:
        existing = message_by_client_id(sender_id=sender_id, client_message_id=client_message_id)
        if existing is not None:
            return _repeat(existing, room_id)
        membership_for(user_id=sender_id, room_id=room_id)  # raises the fitting refusal
    if not _rate_allowed(sender_id):
        existing = message_by_client_id(sender_id=sender_id, client_message_id=client_message_id)
        if existing is not None:  # a retry is never refused: it saves nothing
            return _repeat(existing, room_id)
        raise RateLimited("too many messages; slow down")
    message = Message(
        room_id=room_id, sender_id=sender_id, body=body, client_message_id=client_message_id
    )
    message._member_ids = members  # type: ignore[attr-defined]  # spares message_after_insert a query
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        existing = message_by_client_id(sender_id=sender_id, client_message_id=client_message_id)
        if existing is None:
            raise
        return _repeat(existing, room_id)
    return SentMessage(message, created=True)


def _repeat(existing: Message, room_id: int) -> SentMessage:
    # A retry is the same send again; the same key for another room is a client bug, and
    # answering with a message of a different room would mislead it.
    if existing.room_id != room_id:
        raise BadRequest(
            f"clientMessageId was already used for message {existing.pk} in another room"
        )
    return SentMessage(existing, created=False)


def _rate_allowed(sender_id: int) -> bool:
    if redis_unreachable():
        return True
    try:
        return ratelimit.message_allowed(sender_id)
    except RedisError:
        logger.warning("rate limiter unavailable; letting a message of user %s through", sender_id)
        return True


def message_after_insert(message: Message) -> None:
    """Run inside the transaction that inserted `message` (post_save), whoever saved it.

    Members viewing the room read the message as it lands: their read pointers move past it
    in this same transaction, so the database (the truth) agrees with their badges. The event
    goes out only after commit.
    """
    members = getattr(message, "_member_ids", None) or member_ids(message.room_id)
    try:
        if redis_unreachable():
            raise RedisError("Redis is unreachable")
        viewers = sorted(presence.viewer_ids(message.room_id).intersection(members))
    except RedisError:
        # Redis is a copy; the message is the truth and must still be saved. Without presence
        # the message counts as unread for everyone, which is safe: reading fixes it.
        logger.warning("presence unavailable; message %s counts unread for all", message.pk)
        viewers = []
    if viewers:
        sql, order = _viewers_read_sql(connection.vendor, len(viewers))
        values = [message.pk, message.room_id, *viewers]
        with connection.cursor() as cursor:
            cursor.execute(sql, [values[index] for index in order])
    found = mentions.mentions_in(message.body, member_ids=members, sender_id=message.sender_id)
    _save_mentions(message, found, added=found.user_ids, removed=frozenset())
    event = MessageCreated(
        message_id=message.pk,
        room_id=message.room_id,
        sender_id=message.sender_id,
        body=message.body,
        created_at=iso_utc(message.created_at),
        member_ids=members,
        viewer_ids=viewers,
        mentioned_ids=found.of(members, message.sender_id),
        committed_at=0.0,
    )
    on_commit_robust(_announce_message, event)


def _save_mentions(
    message: Message,
    found: mentions.Mentions,
    *,
    added: frozenset[int],
    removed: frozenset[int],
) -> None:
    """Keep the message's mention rows and `@room` flag as `found` says (no query when a
    message mentions no one, as most do)."""
    if found.room != message.mentions_room:
        Message.objects.filter(pk=message.pk).update(mentions_room=found.room)
        message.mentions_room = found.room
    if removed:
        MessageMention.objects.filter(message_id=message.pk, user_id__in=removed).delete()
    if added:
        MessageMention.objects.bulk_create(
            [MessageMention(message_id=message.pk, user_id=user_id) for user_id in added],
            ignore_conflicts=True,
        )


@functools.lru_cache(maxsize=64)
def _viewers_read_sql(vendor: str, viewers: int) -> tuple[str, list[int]]:
    """The UPDATE that moves `viewers` members' read pointers past a new message, compiled by
    the ORM once per viewer count (building it on every message was ~9 % of the server's CPU
    at 200 msg/s), and where each parameter goes: indexes into
    [message id, room id, *viewer ids]."""
    # Distinct placeholders (`__in` drops repeated values), positive (the ORM knows a pointer
    # below 0 matches nothing); the compiler orders the parameters as it likes.
    base = 10**6
    users = [base + 2 + k for k in range(viewers)]
    query: UpdateQuery = Membership.objects.filter(
        room_id=base + 1, user_id__in=users, last_read_message_id__lt=base
    ).query.chain(UpdateQuery)  # type: ignore[assignment]
    query.add_update_values({"last_read_message_id": base})
    sql, params = query.get_compiler(connection=connection).as_sql()
    return str(sql), [int(param) - base for param in params]


def _announce_message(event: MessageCreated) -> None:
    event["committed_at"] = time.perf_counter()
    message_created.send_robust(sender=Message, event=event)


def room_view(*, user_id: int, room_id: int, channel_name: str) -> None:
    """This connection now views the room: everything in it so far is read."""
    membership = membership_for(user_id=user_id, room_id=room_id)
    # Presence first: a message saved from here on counts as read for this user, and the
    # pointer below covers everything saved before.
    presence.viewing_add(room_ids=[room_id], user_id=user_id, channel_name=channel_name)
    _move_read_pointer(membership, latest_message_id(room_id))


def room_unview(*, user_id: int, room_id: int, channel_name: str) -> None:
    presence.viewing_remove(room_ids=[room_id], user_id=user_id, channel_name=channel_name)


def room_mark_read(*, user_id: int, room_id: int, message_id: int) -> None:
    """Move the read pointer forward to `message_id` (never backwards)."""
    membership = membership_for(user_id=user_id, room_id=room_id)
    _require_message_in_room(room_id=room_id, message_id=message_id)
    _move_read_pointer(membership, message_id)


def _require_message_in_room(*, room_id: int, message_id: int) -> None:
    if (
        not 0 < message_id <= MAX_ID
        or not Message.objects.filter(pk=message_id, room_id=room_id).exists()
    ):
        raise NotFound(f"message {message_id} is not in room {room_id}")


def _move_read_pointer(membership: Membership, upto: int) -> None:
    with transaction.atomic():
        Membership.objects.filter(pk=membership.pk, last_read_message_id__lt=upto).update(
            last_read_message_id=upto
        )
        # Announced even when the pointer was already there: repairing the copy is idempotent
        # and the reply that follows must show the truth.
        event = RoomRead(
            user_id=membership.user_id,
            room_id=membership.room_id,
            read_upto=max(upto, membership.last_read_message_id),
        )
        on_commit_robust(room_read.send_robust, sender=Membership, event=event)


def room_add_member(*, room_id: int, user_id: int) -> Membership:
    """Add a member whose unread count starts at zero: history before joining is not unread."""
    membership, _ = Membership.objects.get_or_create(
        room_id=room_id,
        user_id=user_id,
        defaults={"last_read_message_id": latest_message_id(room_id)},
    )
    return membership


def room_mark_all_read(*, user_id: int, room_id: int) -> None:
    """Read everything in the room so far, as joining it would, without viewing it.

    Staff use it to clear a member's badge; `room_read` fires, so every open device of the
    member gets the new count.
    """
    membership = membership_for(user_id=user_id, room_id=room_id)
    _move_read_pointer(membership, latest_message_id(room_id))


def room_mark_unread(*, user_id: int, room_id: int, message_id: int) -> None:
    """Move the read pointer back to just before `message_id`: it and every later message of
    others count as unread again. The only move backwards; a pointer already before the
    message stays where it is (marking unread never marks anything read)."""
    membership = membership_for(user_id=user_id, room_id=room_id)
    _require_message_in_room(room_id=room_id, message_id=message_id)
    with transaction.atomic():
        Membership.objects.filter(pk=membership.pk, last_read_message_id__gte=message_id).update(
            last_read_message_id=message_id - 1
        )
        event = RoomRead(
            user_id=user_id,
            room_id=room_id,
            read_upto=min(message_id - 1, membership.last_read_message_id),
        )
        # Announced even when the pointer was already there, as reads are: the receivers'
        # rebuild is idempotent and the reply that follows must show the truth.
        on_commit_robust(room_marked_unread.send_robust, sender=Membership, event=event)


def message_delete(*, user_id: int, is_staff: bool, room_id: int, message_id: int) -> None:
    """Delete a message: its sender (while a member) or staff.

    The row goes; the model signal tells the listeners (counts rebuilt and sent to every
    member's devices, `chat-message-deleted` to the room's viewers, a push not yet sent
    dropped with its delivery rows), whoever deletes it: this service, the admin or a shell.
    """
    message = Message.objects.filter(pk=message_id, room_id=room_id).first()
    if not is_staff:
        membership_for(user_id=user_id, room_id=room_id)
    if message is None:
        raise NotFound(f"message {message_id} is not in room {room_id}")
    if not is_staff and message.sender_id != user_id:
        raise NotAllowed("only its sender or staff may delete a message")
    deleted, _ = Message.objects.filter(pk=message.pk).delete()
    if not deleted:  # deleted by a concurrent request in between
        raise NotFound(f"message {message_id} is not in room {room_id}")


def membership_leave(*, user_id: int, room_id: int) -> None:
    """The member leaves the room (staff removing a member deletes the same row): the model
    signal takes the room out of their counts and their open connections' views."""
    membership = membership_for(user_id=user_id, room_id=room_id)
    Membership.objects.filter(pk=membership.pk).delete()


def message_edit(*, user_id: int, room_id: int, message_id: int, body: str) -> Message:
    """Change a message's text: its sender only, while a member. Unread counts stay; mentions
    follow the new text (rows and the `@room` flag), and `message_edited` names who gained and
    who lost a mention, for the counts, the viewers' frames and the pushes."""
    _check_body(body)
    membership_for(user_id=user_id, room_id=room_id)
    message = Message.objects.filter(pk=message_id, room_id=room_id).first()
    if message is None:
        raise NotFound(f"message {message_id} is not in room {room_id}")
    if message.sender_id != user_id:
        raise NotAllowed("only its sender may edit a message")
    with transaction.atomic():
        # Locked: two edits of one message diff their mentions one after the other.
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is None:  # deleted by a concurrent request in between
            raise NotFound(f"message {message_id} is not in room {room_id}")
        members = member_ids(room_id)
        named_before = frozenset(
            MessageMention.objects.filter(message_id=message.pk).values_list("user_id", flat=True)
        )
        before = set(
            mentions.Mentions(message.mentions_room, named_before).of(members, message.sender_id)
        )
        found = mentions.mentions_in(body, member_ids=members, sender_id=message.sender_id)
        message.body = body
        message.edited_at = timezone.now()
        Message.objects.filter(pk=message.pk).update(body=body, edited_at=message.edited_at)
        _save_mentions(
            message,
            found,
            added=found.user_ids - named_before,
            removed=named_before - found.user_ids,
        )
        after = set(found.of(members, message.sender_id))
        event = MessageEdited(
            message_id=message.pk,
            room_id=room_id,
            sender_id=message.sender_id,
            body=body,
            created_at=iso_utc(message.created_at),
            edited_at=iso_utc(message.edited_at),
            member_ids=members,
            mentions_added=sorted(after - before),
            mentions_removed=sorted(before - after),
        )
        on_commit_robust(message_edited.send_robust, sender=Message, event=event)
    return message


def room_level_set(*, user_id: int, room_id: int, level: str) -> None:
    """Set what the member's total counts of this room and which messages push them."""
    if level not in Level.values:
        raise BadRequest(f"level must be one of {', '.join(Level.values)}")
    membership = membership_for(user_id=user_id, room_id=room_id)
    with transaction.atomic():
        # An update, not a save: the membership's post_save would resend the whole snapshot.
        Membership.objects.filter(pk=membership.pk).update(level=level)
        event = LevelChanged(user_id=user_id, room_id=room_id, level=level)
        on_commit_robust(room_level_changed.send_robust, sender=Membership, event=event)
