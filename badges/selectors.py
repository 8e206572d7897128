"""The truth about unread counts, read from the database."""

from collections import defaultdict

from django.db.models import Count, F, Q

from badges.counters import RoomTruth
from chat.models import Membership, Message

# {user id: {room id: (read pointer, unread count)}}
UnreadCounts = dict[int, dict[int, tuple[int, int]]]


def unread_counts_for_users(user_ids: list[int]) -> UnreadCounts:
    """Every room of each user with its pointer and unread count, in one query.

    Unread: messages of the room after the member's read pointer, not sent by the member.
    """
    rows = (
        Membership.objects.filter(user_id__in=user_ids)
        .annotate(
            unread=Count(
                "room__messages",
                filter=Q(room__messages__id__gt=F("last_read_message_id"))
                & ~Q(room__messages__sender_id=F("user_id")),
            )
        )
        .values_list("user_id", "room_id", "last_read_message_id", "unread")
    )
    counts: UnreadCounts = {user_id: {} for user_id in user_ids}
    for user_id, room_id, pointer, unread in rows:
        counts[user_id][room_id] = (pointer, unread)
    return counts


def unread_counts_from_db(user_id: int) -> dict[int, tuple[int, int]]:
    return unread_counts_for_users([user_id])[user_id]


def room_truths_for_users(user_ids: list[int], *, cap: int) -> dict[int, list[RoomTruth]]:
    """What `counters.load_users` needs for each user: pointers, counts and the newest ids.

    A few queries whatever the number of users, so rebuilding a whole 1,000-member room after
    a flush is one pass, not 1,000.
    """
    counts = unread_counts_for_users(user_ids)
    ids: dict[tuple[int, int], list[int]] = defaultdict(list)
    # Rooms where someone has a few unread: fetch once from the lowest such pointer, then
    # pick each member's ids (after their pointer, not their own).
    lowest: dict[int, int] = {}
    for rooms in counts.values():
        for room_id, (pointer, unread) in rooms.items():
            if 0 < unread <= cap:
                lowest[room_id] = min(pointer, lowest.get(room_id, pointer))
    if lowest:
        condition = Q()
        for room_id, pointer in lowest.items():
            condition |= Q(room_id=room_id, id__gt=pointer)
        recent = Message.objects.filter(condition).order_by("-id")
        by_room: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for room_id, message_id, sender_id in recent.values_list("room_id", "id", "sender_id"):
            by_room[room_id].append((message_id, sender_id))
        for user_id, rooms in counts.items():
            for room_id, (pointer, unread) in rooms.items():
                if 0 < unread <= cap:
                    ids[user_id, room_id] = [
                        message_id
                        for message_id, sender_id in by_room[room_id]
                        if message_id > pointer and sender_id != user_id
                    ]
    for user_id, rooms in counts.items():
        for room_id, (pointer, unread) in rooms.items():
            if unread > cap:  # rare: a member far behind; only the newest `cap` ids are kept
                ids[user_id, room_id] = list(
                    Message.objects.filter(room_id=room_id, id__gt=pointer)
                    .exclude(sender_id=user_id)
                    .order_by("-id")
                    .values_list("id", flat=True)[:cap]
                )
    return {
        user_id: [
            RoomTruth(room_id, pointer, unread, ids.get((user_id, room_id), []))
            for room_id, (pointer, unread) in rooms.items()
        ]
        for user_id, rooms in counts.items()
    }
