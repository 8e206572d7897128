"""The truth about unread counts, read from the database."""

from django.db.models import Count, F, Q

from badges.counters import RoomTruth
from chat.models import Membership, Message


def unread_counts_from_db(user_id: int) -> dict[int, tuple[int, int]]:
    """{room id: (read pointer, unread count)} for every room of the user, in one query.

    Unread: messages of the room after the member's read pointer, not sent by the member.
    """
    rows = (
        Membership.objects.filter(user_id=user_id)
        .annotate(
            unread=Count(
                "room__messages",
                filter=Q(room__messages__id__gt=F("last_read_message_id"))
                & ~Q(room__messages__sender_id=user_id),
            )
        )
        .values_list("room_id", "last_read_message_id", "unread")
    )
    return {room_id: (pointer, unread) for room_id, pointer, unread in rows}


def room_truths(user_id: int, *, cap: int) -> list[RoomTruth]:
    """What `counters.load_user` needs: per room the pointer, the count and the newest ids."""
    counts = unread_counts_from_db(user_id)
    ids: dict[int, list[int]] = {room_id: [] for room_id in counts}
    small = [(room, pointer) for room, (pointer, unread) in counts.items() if 0 < unread <= cap]
    if small:
        condition = Q()
        for room_id, pointer in small:
            condition |= Q(room_id=room_id, id__gt=pointer)
        rows = (
            Message.objects.filter(condition)
            .exclude(sender_id=user_id)
            .order_by("-id")
            .values_list("room_id", "id")
        )
        for room_id, message_id in rows:
            ids[room_id].append(message_id)
    for room_id, (pointer, unread) in counts.items():
        if unread > cap:
            ids[room_id] = list(
                Message.objects.filter(room_id=room_id, id__gt=pointer)
                .exclude(sender_id=user_id)
                .order_by("-id")
                .values_list("id", flat=True)[:cap]
            )
    return [
        RoomTruth(
            room_id=room_id, pointer=pointer, unread_count=unread, newest_unread_ids=ids[room_id]
        )
        for room_id, (pointer, unread) in counts.items()
    ]
