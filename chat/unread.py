"""What chat needs to know about unread counts, without knowing who keeps them.

The consumer and the HTTP views show counts (the snapshot, `joined-room`, `GET /api/rooms`);
`settings.CHAT_UNREAD_COUNTS` names the class that provides them (the badges app's Redis
counters by default). chat imports nothing of badges: badges plugs in here and listens to
chat's signals.
"""

from functools import cache
from typing import Any, NamedTuple, Protocol

from django.utils.module_loading import import_string

from chat.app_settings import app_settings


class RoomBadge(NamedTuple):
    total: int
    room_count: int
    version: int


class UnreadCounts(Protocol):
    def unread_state(self, user_id: int) -> Any:
        """The `unread-state` snapshot frame of shared/PROTOCOL.md."""

    def room_badge(self, user_id: int, room_id: int) -> RoomBadge: ...


@cache
def unread_counts() -> UnreadCounts:
    provider: UnreadCounts = import_string(app_settings.UNREAD_COUNTS)()
    return provider
