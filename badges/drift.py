"""The database's unread and mention counts and levels beside Redis's, for many users at once.

What the staff admin shows on a page of users or memberships: one query and one Redis
pipeline for the whole page, whatever its size, never a question per row. "Drift" means Redis
holds the user and some count differs from the database; a user Redis does not hold is not
drift (the next read rebuilds it), and shows as missing.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from badges import counters
from badges.counters import UserState
from badges.selectors import RoomCounts, room_counts_for_users, totals

# Users compared per query and pipeline when a whole table is scanned (the drift filter).
SCAN_BATCH = 500


@dataclass(frozen=True)
class ComparedCounts:
    user_id: int
    rooms: dict[int, RoomCounts]  # the truth
    redis: UserState | None  # None: Redis does not hold this user

    @property
    def database(self) -> dict[int, int]:
        """Room id → unread count, the truth."""
        return {room_id: room.unread for room_id, room in self.rooms.items()}

    @property
    def database_total(self) -> int:
        return totals(self.rooms)[0]

    @property
    def database_mention_total(self) -> int:
        return totals(self.rooms)[1]

    @property
    def redis_total(self) -> int | None:
        return None if self.redis is None else self.redis.total

    def redis_room(self, room_id: int) -> int | None:
        return None if self.redis is None else self.redis.rooms.get(room_id)

    def redis_room_mentions(self, room_id: int) -> int | None:
        return None if self.redis is None else self.redis.mentions.get(room_id)

    def wrong_in_room(self, room_id: int) -> int:
        """How many of the room's counters (unread, mentions, level) Redis has wrong."""
        if self.redis is None or room_id not in self.rooms:
            return 0
        room = self.rooms[room_id]
        return (
            (self.redis.rooms.get(room_id) != room.unread)
            + (self.redis.mentions.get(room_id) != room.mentions)
            + (self.redis.levels.get(room_id) != room.level)
        )

    def room_drifted(self, room_id: int) -> bool:
        return self.wrong_in_room(room_id) > 0

    @property
    def wrong(self) -> int:
        """How many counters Redis has wrong: each room's three, the total, the mention total."""
        if self.redis is None:
            return 0
        return (
            sum(self.wrong_in_room(room_id) for room_id in self.rooms)
            + (self.redis.total != self.database_total)
            + (self.redis.total_mentions != self.database_mention_total)
        )

    @property
    def drifted(self) -> bool:
        return self.wrong > 0


def compare_counts(user_ids: list[int]) -> dict[int, ComparedCounts]:
    """Each user's counts from the database and from Redis: one query, one pipeline."""
    user_ids = sorted(set(user_ids))
    if not user_ids:
        return {}
    truth = room_counts_for_users(user_ids)
    states = counters.user_states({user_id: list(truth[user_id]) for user_id in user_ids})
    return {
        user_id: ComparedCounts(user_id=user_id, rooms=truth[user_id], redis=states[user_id])
        for user_id in user_ids
    }


def compare_counts_in_batches(user_ids: list[int]) -> Iterator[ComparedCounts]:
    """`compare_counts` over any number of users, `SCAN_BATCH` at a time."""
    user_ids = sorted(set(user_ids))
    for start in range(0, len(user_ids), SCAN_BATCH):
        yield from compare_counts(user_ids[start : start + SCAN_BATCH]).values()
