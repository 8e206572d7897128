"""The unread counts that chat's consumer and views show, as chat.unread asks for them."""

from badges.services import badges_state
from chat.unread import Counts


class RedisUnreadCounts:
    def counts(self, user_id: int, room_ids: list[int]) -> Counts:
        state = badges_state(user_id=user_id, room_ids=room_ids)
        rooms = {room_id: state.rooms.get(room_id, 0) for room_id in room_ids}
        return Counts(total=state.total, version=state.version, rooms=rooms)
