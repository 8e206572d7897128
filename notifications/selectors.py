"""Who gets a push of a message: every rule in one place.

`message_push_verdicts` is the one function that decides, for a batch of messages, which
members get a push and why the others do not. Everything else on the push path (planning the
deliveries, retries, the worker's jobs) asks it and records what it says; to change who gets a
push (notification levels, mention-only pushes, a deleted message's pending push dropped),
change this module and its tests (notifications/tests/test_jobs.py), nothing else.

The rules, in the order they are checked for each member of the message's room but its sender:
  - not a member any more (left the room): nothing of it is theirs to read -> `read`;
  - a connection viewing the room now (chat.presence) -> `viewing`;
  - read pointer at or past the message (read it on any device meanwhile, or was viewing the
    room when it was saved: chat moves viewers' pointers) -> `read`;
  - the room at notification level `none` (muted) -> `muted`;
  - at level `mentions`, a message that does not mention them -> `unmention`;
  - else: push, to each of the member's active devices.
A message that no longer exists -> `deleted` for every recipient.

An edit that adds a mention plans the message again (notifications.delivery, "Edits"); who of
its recipients that re-plan may push is decided here too (`edit_may_push`).

It is asked when the push is due (after PUSH_GRACE_SECONDS) and again before every retry, and
reads in a fixed number of queries (and one Redis round trip per room for the viewers)
whatever the number of messages and members.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.contrib.auth import get_user_model
from redis.exceptions import RedisError

from chat import presence
from chat.models import Level, Membership, Message, MessageMention
from notifications.models import PushDelivery

Reason = PushDelivery.Reason
PUSH = Reason.NONE  # the verdict "push it"


class PushableMessage(NamedTuple):
    """What a push needs of a message, read as plain values (no model instances per message)."""

    pk: int
    room_id: int
    sender_id: int
    body: str
    created_at: datetime
    room_name: str
    sender_name: str
    mentions_room: bool
    edited_at: datetime | None


@dataclass(frozen=True)
class MessagePushVerdicts:
    """The messages found, and for each the verdict on every recipient (members but the sender):
    `PUSH` (an empty reason) or the Reason why not."""

    messages: dict[int, PushableMessage]
    verdicts: dict[int, dict[int, str]] = field(default_factory=dict)
    # (message, user) pairs named with `@username`; `@room` is the message's own flag.
    named: set[tuple[int, int]] = field(default_factory=set)
    # (room, user) of the members asked about whose level in that room is `mentions`.
    mentions_level: set[tuple[int, int]] = field(default_factory=set)

    def mentions(self, message_id: int, user_id: int) -> bool:
        """Whether the message mentions this member (the push payload's `mention`)."""
        message = self.messages.get(message_id)
        if message is None or user_id == message.sender_id:
            return False
        return message.mentions_room or (message_id, user_id) in self.named

    def edit_may_push(self, message_id: int, user_id: int) -> bool:
        """Whether a re-plan after an edit may push the message to this member: it is to be
        pushed now and their level is `mentions`, so the push is owed to a mention (one the
        edit added, unless they had it already and the caller finds it was pushed). A member at
        `all` was pushed the message, or decided about, when it was new: an edit owes them
        nothing, even a new device."""
        message = self.messages.get(message_id)
        return (
            message is not None
            and (message.room_id, user_id) in self.mentions_level
            and self.reason(message_id, user_id) == PUSH
        )

    def reason(self, message_id: int, user_id: int) -> str:
        """The verdict for one (message, user), users not asked about included."""
        if message_id not in self.messages:
            return Reason.DELETED
        # Not a recipient: the sender (who never gets a delivery) or a member who left.
        return self.verdicts[message_id].get(user_id, Reason.READ)

    def recipients(self, message_id: int) -> dict[int, str]:
        return self.verdicts.get(message_id, {})


def message_push_verdicts(
    message_ids: list[int], user_ids: list[int] | None = None
) -> MessagePushVerdicts:
    """Who of each message's room gets a push of it now, and why the others do not; only these
    users when given (a retry asks about one member, not the whole room)."""
    username = f"sender__{get_user_model().USERNAME_FIELD}"
    messages = {
        values[0]: PushableMessage(*values)
        for values in Message.objects.filter(pk__in=message_ids).values_list(
            "pk",
            "room_id",
            "sender_id",
            "body",
            "created_at",
            "room__name",
            username,
            "mentions_room",
            "edited_at",
        )
    }
    rooms = {message.room_id for message in messages.values()}
    if not rooms:
        return MessagePushVerdicts(messages)
    memberships = Membership.objects.filter(room_id__in=rooms)
    named = MessageMention.objects.filter(message_id__in=messages)
    if user_ids is not None:
        memberships = memberships.filter(user_id__in=user_ids)
        named = named.filter(user_id__in=user_ids)
    members: dict[int, list[tuple[int, int, str]]] = {}
    mentions_level: set[tuple[int, int]] = set()
    for room_id, user_id, read_upto, level in memberships.values_list(
        "room_id", "user_id", "last_read_message_id", "level"
    ):
        members.setdefault(room_id, []).append((user_id, read_upto, level))
        if level == Level.MENTIONS:
            mentions_level.add((room_id, user_id))
    found = MessagePushVerdicts(
        messages, {}, set(named.values_list("message_id", "user_id")), mentions_level
    )
    viewing = {room_id: _viewers(room_id) for room_id in rooms}
    for message in messages.values():
        viewers = viewing[message.room_id]
        found.verdicts[message.pk] = {
            user_id: (
                Reason.VIEWING
                if user_id in viewers
                else Reason.READ
                if read_upto >= message.pk
                else Reason.MUTED
                if level == Level.NONE
                else Reason.NOT_MENTIONED
                if level == Level.MENTIONS and not found.mentions(message.pk, user_id)
                else PUSH
            )
            for user_id, read_upto, level in members.get(message.room_id, [])
            if user_id != message.sender_id
        }
    return found


def _viewers(room_id: int) -> set[int]:
    try:
        return presence.viewer_ids(room_id)
    except RedisError:
        return set()  # unknown: the read pointer still catches whoever viewed at save time
