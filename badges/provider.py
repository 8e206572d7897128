"""The unread counts that chat's consumer and views show, as chat.unread asks for them.

While Redis is unreachable the counts come from the database (the truth) with version 0,
"no version": the consumer then answers with the connection's own next version, and the
fresh snapshot sent when Redis is back (chat.live) carries a real one again.
"""

import logging

from redis.exceptions import RedisError

from badges.selectors import room_counts_for_users, totals
from badges.services import badges_rebuild_users, badges_state, badges_totals
from chat.unread import Counts
from chatproject.redis_watch import redis_unreachable

logger = logging.getLogger(__name__)


class RedisUnreadCounts:
    def counts(self, user_id: int, room_ids: list[int]) -> Counts:
        try:
            if redis_unreachable():
                raise RedisError("Redis is unreachable")
            state = badges_state(user_id=user_id, room_ids=room_ids)
        except RedisError:
            logger.warning("Redis unavailable: counts of user %s from the database", user_id)
            truth = room_counts_for_users([user_id])[user_id]
            total, total_mentions = totals(truth)
            return Counts(
                total=total,
                version=0,
                rooms={
                    room_id: truth[room_id].unread if room_id in truth else 0
                    for room_id in room_ids
                },
                total_mentions=total_mentions,
                mentions={
                    room_id: truth[room_id].mentions if room_id in truth else 0
                    for room_id in room_ids
                },
            )
        return Counts(
            total=state.total,
            version=state.version,
            rooms={room_id: state.rooms.get(room_id, 0) for room_id in room_ids},
            total_mentions=state.total_mentions,
            mentions={room_id: state.mentions.get(room_id, 0) for room_id in room_ids},
        )

    def totals(self, user_ids: list[int]) -> dict[int, int]:
        try:
            if redis_unreachable():
                raise RedisError("Redis is unreachable")
            return badges_totals(user_ids=user_ids)
        except RedisError:
            logger.warning("Redis unavailable: totals of %d users from the database", len(user_ids))
            truth = room_counts_for_users(user_ids)
            return {user_id: totals(truth[user_id])[0] for user_id in user_ids}

    def refresh(self, user_ids: list[int]) -> None:
        # A merge, not a reset: live updates racing with it are kept, and what Redis missed
        # (or kept too long) while it was away is settled by the database.
        badges_rebuild_users(user_ids, reason="resync")
