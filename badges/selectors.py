"""The truth about unread and mention counts, read from the database."""

from collections import defaultdict
from typing import NamedTuple

from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from badges.counters import RoomTruth
from chat.models import Level, Membership, Message, MessageMention


class RoomCounts(NamedTuple):
    """One member's room as the database has it."""

    pointer: int
    unread: int
    mentions: int  # of the unread, those that mention the member
    level: str


def shares(room: RoomCounts) -> tuple[int, int]:
    """What the room adds to the member's total and mention total at its level."""
    if room.level == Level.NONE:
        return 0, 0
    if room.level == Level.MENTIONS:
        return room.mentions, room.mentions
    return room.unread, room.mentions


def totals(rooms: dict[int, RoomCounts]) -> tuple[int, int]:
    """The member's total and mention total over these rooms (shared/PROTOCOL.md)."""
    total = mention_total = 0
    for room in rooms.values():
        adds, mention_adds = shares(room)
        total += adds
        mention_total += mention_adds
    return total, mention_total


def _mentions_of_member() -> Q:
    """A message mentions the member of the outer Membership row (`@room` or by name)."""
    named = MessageMention.objects.filter(
        message_id=OuterRef("pk"), user_id=OuterRef(OuterRef("user_id"))
    )
    return Q(mentions_room=True) | Q(Exists(named))


def room_counts_for_users(user_ids: list[int]) -> dict[int, dict[int, RoomCounts]]:
    """Every room of each user with its pointer, unread and mention counts and level, in one
    query. Unread: messages of the room after the member's read pointer, not sent by them."""
    mentioned = (
        Message.objects.filter(room_id=OuterRef("room_id"), id__gt=OuterRef("last_read_message_id"))
        .exclude(sender_id=OuterRef("user_id"))
        .filter(_mentions_of_member())
        .order_by()
        .values("room_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    rows = (
        Membership.objects.filter(user_id__in=user_ids)
        .annotate(
            unread=Count(
                "room__messages",
                filter=Q(room__messages__id__gt=F("last_read_message_id"))
                & ~Q(room__messages__sender_id=F("user_id")),
            ),
            mentions=Coalesce(Subquery(mentioned, output_field=IntegerField()), Value(0)),
        )
        .values_list("user_id", "room_id", "last_read_message_id", "unread", "mentions", "level")
    )
    counts: dict[int, dict[int, RoomCounts]] = {user_id: {} for user_id in user_ids}
    for user_id, room_id, pointer, unread, mentions, level in rows:
        counts[user_id][room_id] = RoomCounts(pointer, unread, mentions, level)
    return counts


# {user id: {room id: (read pointer, unread count)}}
UnreadCounts = dict[int, dict[int, tuple[int, int]]]


def unread_counts_for_users(user_ids: list[int]) -> UnreadCounts:
    """`room_counts_for_users`, pointers and unread counts only."""
    return {
        user_id: {room_id: (room.pointer, room.unread) for room_id, room in rooms.items()}
        for user_id, rooms in room_counts_for_users(user_ids).items()
    }


def unread_counts_from_db(user_id: int) -> dict[int, tuple[int, int]]:
    return unread_counts_for_users([user_id])[user_id]


def room_truths_for_users(user_ids: list[int], *, cap: int) -> dict[int, list[RoomTruth]]:
    """What `counters.load_users` needs for each user: pointers, counts, levels and the newest
    unread ids with those of them that mention the user.

    A few queries whatever the number of users, so rebuilding a whole 1,000-member room after
    a flush is one pass, not 1,000.
    """
    counts = room_counts_for_users(user_ids)
    ids: dict[tuple[int, int], list[int]] = defaultdict(list)
    everyone: set[int] = set()  # messages with `@room` among those fetched
    # Rooms where someone has a few unread: fetch once from the lowest such pointer, then
    # pick each member's ids (after their pointer, not their own).
    lowest: dict[int, int] = {}
    for rooms in counts.values():
        for room_id, room in rooms.items():
            if room.unread:
                lowest[room_id] = min(room.pointer, lowest.get(room_id, room.pointer))
    few = {
        room_id: pointer
        for room_id, pointer in lowest.items()
        if any(0 < rooms[room_id].unread <= cap for rooms in counts.values() if room_id in rooms)
    }
    if few:
        condition = Q()
        for room_id, pointer in few.items():
            condition |= Q(room_id=room_id, id__gt=pointer)
        recent = Message.objects.filter(condition).order_by("-id")
        by_room: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for room_id, message_id, sender_id, room_wide in recent.values_list(
            "room_id", "id", "sender_id", "mentions_room"
        ):
            by_room[room_id].append((message_id, sender_id))
            if room_wide:
                everyone.add(message_id)
        for user_id, rooms in counts.items():
            for room_id, room in rooms.items():
                if 0 < room.unread <= cap:
                    ids[user_id, room_id] = [
                        message_id
                        for message_id, sender_id in by_room[room_id]
                        if message_id > room.pointer and sender_id != user_id
                    ]
    for user_id, rooms in counts.items():
        for room_id, room in rooms.items():
            if room.unread > cap:  # rare: a member far behind; only the newest `cap` ids are kept
                newest = list(
                    Message.objects.filter(room_id=room_id, id__gt=room.pointer)
                    .exclude(sender_id=user_id)
                    .order_by("-id")
                    .values_list("id", "mentions_room")[:cap]
                )
                ids[user_id, room_id] = [message_id for message_id, _ in newest]
                everyone.update(message_id for message_id, room_wide in newest if room_wide)
    named = _named_mentions(counts, lowest)
    return {
        user_id: [
            RoomTruth(
                room_id,
                room.pointer,
                room.unread,
                ids.get((user_id, room_id), []),
                room.level,
                room.mentions,
                [
                    message_id
                    for message_id in ids.get((user_id, room_id), [])
                    if message_id in everyone or (user_id, message_id) in named
                ]
                if room.mentions
                else [],
            )
            for room_id, room in rooms.items()
        ]
        for user_id, rooms in counts.items()
    }


def _named_mentions(
    counts: dict[int, dict[int, RoomCounts]], lowest: dict[int, int]
) -> set[tuple[int, int]]:
    """(user, message) of the `@username` mentions after the lowest pointer of each room where
    someone has an unread mention."""
    rooms = {
        room_id for rooms in counts.values() for room_id, room in rooms.items() if room.mentions
    }
    if not rooms:
        return set()
    condition = Q()
    for room_id in rooms:
        condition |= Q(message__room_id=room_id, message_id__gt=lowest[room_id])
    users = [
        user_id for user_id, rooms in counts.items() if any(r.mentions for r in rooms.values())
    ]
    return set(
        MessageMention.objects.filter(condition, user_id__in=users).values_list(
            "user_id", "message_id"
        )
    )
