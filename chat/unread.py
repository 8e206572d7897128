"""What chat needs to know about unread counts, without knowing who keeps them.

The consumer and the HTTP views show counts (the snapshot, `joined-room`, `mark-read`,
`GET /api/rooms`); `settings.CHAT_UNREAD_COUNTS` names the class that provides them (the
badges app's Redis counters by default). chat imports nothing of badges: badges plugs in here
and listens to chat's signals.
"""

from functools import cache
from typing import NamedTuple, Protocol

from django.utils.module_loading import import_string

from chat.app_settings import app_settings
from chat.events import UnreadStateFrame
from chat.selectors import rooms_of


class Counts(NamedTuple):
    total: int  # what the levels count (shared/PROTOCOL.md, "Notification level")
    version: int  # grows with every change of the user's counts
    rooms: dict[int, int]  # unread count of each room asked for
    total_mentions: int
    mentions: dict[int, int]  # mention count of each room asked for


class UnreadCounts(Protocol):
    def counts(self, user_id: int, room_ids: list[int]) -> Counts:
        """The user's total, version and the counts of these rooms (read-only).

        Version 0 means "no version": the counts come from the database because the
        counters are unavailable."""
        ...

    def totals(self, user_ids: list[int]) -> dict[int, int]:
        """Each user's total (read-only), for many users in one go: the push worker reads the
        badges of a thousand recipients at once."""
        ...

    def refresh(self, user_ids: list[int]) -> None:
        """Settle these users' counts against the database: the copy may have missed changes
        (Redis was unreachable, restarted or flushed)."""
        ...


@cache
def unread_counts() -> UnreadCounts:
    provider: UnreadCounts = import_string(app_settings.UNREAD_COUNTS)()
    return provider


class RoomBadge(NamedTuple):
    total: int
    room_count: int
    version: int
    total_mentions: int
    room_mentions: int


def room_badge(user_id: int, room_id: int) -> RoomBadge:
    counts = unread_counts().counts(user_id, [room_id])
    return RoomBadge(
        total=counts.total,
        room_count=counts.rooms[room_id],
        version=counts.version,
        total_mentions=counts.total_mentions,
        room_mentions=counts.mentions[room_id],
    )


def counts_refresh(user_ids: list[int]) -> None:
    if user_ids:
        unread_counts().refresh(user_ids)


def unread_state(user_id: int) -> UnreadStateFrame:
    """The snapshot every connection starts with (shared/PROTOCOL.md)."""
    rooms = rooms_of(user_id)
    counts = unread_counts().counts(user_id, [room["id"] for room in rooms])
    return {
        "type": "unread-state",
        "totalUnreadCount": counts.total,
        "totalMentionCount": counts.total_mentions,
        "version": counts.version,
        "rooms": [
            {
                "roomId": room["id"],
                "unreadCount": counts.rooms[room["id"]],
                "mentionCount": counts.mentions[room["id"]],
                "level": room["level"],
                "lastMessageId": room["lastMessageId"],
            }
            for room in rooms
        ],
    }
