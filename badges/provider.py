"""The unread counts that chat's consumer and views show, as chat.unread asks for them."""

from badges.events import UnreadState
from badges.services import badges_state
from chat.selectors import rooms_of
from chat.unread import RoomBadge


class RedisUnreadCounts:
    def unread_state(self, user_id: int) -> UnreadState:
        rooms = rooms_of(user_id)
        state = badges_state(user_id=user_id, room_ids=[room["id"] for room in rooms])  # type: ignore[misc]
        return {
            "type": "unread-state",
            "totalUnreadCount": state.total,
            "version": state.version,
            "rooms": [
                {
                    "roomId": room["id"],  # type: ignore[typeddict-item]
                    "unreadCount": state.rooms.get(room["id"], 0),  # type: ignore[call-overload]
                    "lastMessageId": room["lastMessageId"],  # type: ignore[typeddict-item]
                }
                for room in rooms
            ],
        }

    def room_badge(self, user_id: int, room_id: int) -> RoomBadge:
        state = badges_state(user_id=user_id, room_ids=[room_id])
        return RoomBadge(
            total=state.total, room_count=state.rooms.get(room_id, 0), version=state.version
        )
