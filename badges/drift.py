"""The database's unread counts beside the ones Redis holds, for many users at once.

What the staff admin shows on a page of users or memberships: one query and one Redis
pipeline for the whole page, whatever its size, never a question per row. "Drift" means Redis
holds the user and some count differs from the database; a user Redis does not hold is not
drift (the next read rebuilds it), and shows as missing.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from badges import counters
from badges.counters import UserState
from badges.selectors import unread_counts_for_users

# Users compared per query and pipeline when a whole table is scanned (the drift filter).
SCAN_BATCH = 500


@dataclass(frozen=True)
class ComparedCounts:
    user_id: int
    database: dict[int, int]  # room id → unread count, the truth
    redis: UserState | None  # None: Redis does not hold this user

    @property
    def database_total(self) -> int:
        return sum(self.database.values())

    @property
    def redis_total(self) -> int | None:
        return None if self.redis is None else self.redis.total

    def redis_room(self, room_id: int) -> int | None:
        return None if self.redis is None else self.redis.rooms.get(room_id)

    def room_drifted(self, room_id: int) -> bool:
        return self.redis is not None and self.redis.rooms.get(room_id) != self.database.get(
            room_id
        )

    @property
    def drifted(self) -> bool:
        if self.redis is None:
            return False
        return self.redis.total != self.database_total or any(
            self.room_drifted(room_id) for room_id in self.database
        )


def compare_counts(user_ids: list[int]) -> dict[int, ComparedCounts]:
    """Each user's counts from the database and from Redis: one query, one pipeline."""
    user_ids = sorted(set(user_ids))
    if not user_ids:
        return {}
    truth = unread_counts_for_users(user_ids)
    states = counters.user_states({user_id: list(truth[user_id]) for user_id in user_ids})
    return {
        user_id: ComparedCounts(
            user_id=user_id,
            database={room_id: unread for room_id, (_, unread) in truth[user_id].items()},
            redis=states[user_id],
        )
        for user_id in user_ids
    }


def compare_counts_in_batches(user_ids: list[int]) -> Iterator[ComparedCounts]:
    """`compare_counts` over any number of users, `SCAN_BATCH` at a time."""
    user_ids = sorted(set(user_ids))
    for start in range(0, len(user_ids), SCAN_BATCH):
        yield from compare_counts(user_ids[start : start + SCAN_BATCH]).values()
