"""Reads of the chat app."""

import functools
from datetime import datetime
from typing import NamedTuple, TypedDict

from django.db import connection
from django.db.models import Max

from chat.errors import NotAMember, NotFound
from chat.events import MessageFrame
from chat.models import Membership, Message, Room


def iso_utc(moment: datetime) -> str:
    """Protocol times: ISO 8601 in UTC with a Z."""
    return moment.isoformat().replace("+00:00", "Z")


MAX_ID = 2**63 - 1  # ids are bigints; a larger one would overflow the database driver


def membership_for(*, user_id: int, room_id: int) -> Membership:
    """The user's membership of the room, or the protocol's refusal."""
    if not 0 < room_id <= MAX_ID:
        raise NotFound(f"room {room_id} does not exist")
    membership = Membership.objects.filter(user_id=user_id, room_id=room_id).first()
    if membership is not None:
        return membership
    if Room.objects.filter(pk=room_id).exists():
        raise NotAMember(f"you are not a member of room {room_id}")
    raise NotFound(f"room {room_id} does not exist")


def latest_message_id(room_id: int) -> int:
    latest = Message.objects.filter(room_id=room_id).aggregate(latest=Max("id"))["latest"]
    return int(latest or 0)


def member_ids(room_id: int) -> list[int]:
    # The first statement of every send. Django builds and compiles the queryset anew each
    # time (a third of message_send's CPU in the 200 msg/s profile); its SQL never changes, so
    # it is compiled once by the ORM itself and run with the room id.
    with connection.cursor() as cursor:
        cursor.execute(_member_ids_sql(connection.vendor), [room_id])
        return [row[0] for row in cursor.fetchall()]


@functools.cache
def _member_ids_sql(vendor: str) -> str:
    query = Membership.objects.filter(room_id=0).values_list("user_id", flat=True).query
    sql, params = query.get_compiler(connection=connection).as_sql()
    assert list(params) == [0], "member_ids expects the room id as its only parameter"
    return str(sql)


def message_by_client_id(*, sender_id: int, client_message_id: str) -> Message | None:
    return Message.objects.filter(sender_id=sender_id, client_message_id=client_message_id).first()


def message_dict(message: Message) -> MessageFrame:
    """A message as the protocol shows it (`chat-message`, `lastMessage`)."""
    return {
        "id": message.pk,
        "senderId": message.sender_id,
        "body": message.body,
        "createdAt": iso_utc(message.created_at),
    }


class HistoryMessage(MessageFrame):
    editedAt: str | None


def history_dict(message: Message) -> HistoryMessage:
    """A message as history lists it: `message_dict` and when it was last edited, if ever."""
    return {
        **message_dict(message),
        "editedAt": iso_utc(message.edited_at) if message.edited_at else None,
    }


class RoomSummary(TypedDict):
    id: int
    name: str
    level: str  # the member's notification level
    lastMessageId: int
    lastMessage: MessageFrame | None


def rooms_of(user_id: int) -> list[RoomSummary]:
    """The user's rooms with their last message, in room order (two queries)."""
    memberships = list(
        Membership.objects.filter(user_id=user_id)
        .select_related("room")
        .annotate(last_message_id=Max("room__messages__id"))
        .order_by("room_id")
    )
    last_ids = [m.last_message_id for m in memberships if m.last_message_id]
    last_messages = {message.pk: message for message in Message.objects.filter(pk__in=last_ids)}
    return [
        {
            "id": m.room_id,
            "name": m.room.name,
            "level": m.level,
            "lastMessageId": m.last_message_id or 0,
            # None also when that message was deleted between the two queries (the delete's
            # own fresh snapshot follows).
            "lastMessage": (
                message_dict(last_messages[m.last_message_id])
                if m.last_message_id in last_messages
                else None
            ),
        }
        for m in memberships
    ]


HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 200


class HistoryPage(NamedTuple):
    messages: list[HistoryMessage]  # newest first
    has_more: bool  # older messages exist beyond this page


def messages_before(*, user_id: int, room_id: int, before: int | None, limit: int) -> HistoryPage:
    """A page of the room's history for a member, newest first (two queries).

    `before` is a cursor: any id, whether or not a message has it; one past the bigint range
    means "from the newest". One row beyond the limit is fetched to tell whether there is more.
    """
    membership_for(user_id=user_id, room_id=room_id)
    rows = Message.objects.filter(room_id=room_id)
    if before is not None and before <= MAX_ID:
        rows = rows.filter(id__lt=before)
    page = list(
        rows.order_by("-id").only("id", "sender_id", "body", "created_at", "edited_at")[: limit + 1]
    )
    return HistoryPage(
        messages=[history_dict(message) for message in page[:limit]],
        has_more=len(page) > limit,
    )


def member_names_for(user_id: int) -> dict[int, str]:
    """Usernames of everyone who shares a room with the user, the user included (one query)."""
    from django.contrib.auth import get_user_model

    users = (
        get_user_model()
        .objects.filter(chat_memberships__room__memberships__user_id=user_id)
        .distinct()
    )
    return dict(users.values_list("pk", "username"))
