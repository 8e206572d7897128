"""The Lua counters against a real Redis: exact, idempotent and order-independent."""

import itertools

import pytest

from badges import counters
from badges.counters import RoomTruth, Status
from chatproject.redis_client import redis_connection

ROOM = 7
CAP = 1000


def _load(user_id: int, pointer: int = 0, ids: list[int] | None = None, cap: int = CAP) -> None:
    ids = ids or []
    counters.load_users(
        {user_id: [RoomTruth(ROOM, pointer, len(ids), sorted(ids, reverse=True))]}, cap=cap
    )


def _unread(user_id: int, message_id: int, cap: int = CAP) -> counters.Badge:
    return counters.apply_message(
        room_id=ROOM, message_id=message_id, modes={user_id: "unread"}, cap=cap
    )[user_id]


def _count(user_id: int) -> int:
    state = counters.user_state(user_id=user_id, room_ids=[ROOM])
    assert state is not None
    assert state.total == state.rooms[ROOM]
    return state.rooms[ROOM]


def test_missing_user_is_reported_not_counted() -> None:
    badge = _unread(1, 10)
    assert badge.status is Status.MISSING
    assert counters.user_state(user_id=1, room_ids=[ROOM]) is None


def test_a_retried_message_counts_once() -> None:
    _load(1)
    first = _unread(1, 10)
    again = _unread(1, 10)
    assert (first.status, first.room_count, first.total) == (Status.CHANGED, 1, 1)
    assert (again.status, again.room_count) == (Status.UNCHANGED, 1)
    assert again.version == first.version


def test_modes_for_sender_and_viewer() -> None:
    for user_id in (1, 2, 3):
        _load(user_id)
    _unread(2, 5)  # the viewer had one unread before viewing
    badges = counters.apply_message(
        room_id=ROOM, message_id=10, modes={1: "same", 2: "read", 3: "unread"}, cap=CAP
    )
    assert badges[1].status is Status.UNCHANGED and badges[1].room_count == 0
    assert badges[2].status is Status.CHANGED and badges[2].room_count == 0
    assert badges[3].status is Status.CHANGED and badges[3].room_count == 1


@pytest.mark.parametrize("order", list(itertools.permutations(["m11", "m12", "read11"])))
def test_sends_and_reads_commute(order: tuple[str, ...]) -> None:
    """Whatever order the events reach Redis in, the count is the truth: one unread (12)."""
    _load(1, pointer=10)
    for step in order:
        if step == "read11":
            counters.apply_read(user_id=1, room_id=ROOM, read_upto=11, cap=CAP)
        else:
            _unread(1, int(step[1:]))
    assert _count(1) == 1


def test_read_never_moves_backwards() -> None:
    _load(1)
    for message_id in (1, 2, 3):
        _unread(1, message_id)
    counters.apply_read(user_id=1, room_id=ROOM, read_upto=3, cap=CAP)
    counters.apply_read(user_id=1, room_id=ROOM, read_upto=1, cap=CAP)
    assert _count(1) == 0
    assert _unread(1, 2).status is Status.UNCHANGED  # at or below the pointer: already read


def test_versions_grow_with_every_change_and_survive_a_flush() -> None:
    _load(1)
    versions = [_unread(1, message_id).version for message_id in (1, 2, 3)]
    assert versions == sorted(versions) and len(set(versions)) == 3
    redis_connection().flushdb()
    _load(1, ids=[1, 2, 3])
    state = counters.user_state(user_id=1, room_ids=[ROOM])
    assert state is not None and state.version > versions[-1]


def test_counts_past_the_cap_stay_exact() -> None:
    _load(1)
    for message_id in range(1, 11):
        _unread(1, message_id, cap=4)
    assert _count(1) == 10
    counters.apply_read(user_id=1, room_id=ROOM, read_upto=8, cap=4)
    assert _count(1) == 2


def test_reading_into_the_trimmed_region_forgets_the_user() -> None:
    """Redis cannot know how many trimmed ids lie above the pointer: the database decides."""
    _load(1)
    for message_id in range(1, 11):
        _unread(1, message_id, cap=4)
    badge = counters.apply_read(user_id=1, room_id=ROOM, read_upto=3, cap=4)
    assert badge.status is Status.MISSING


def test_load_merges_with_live_updates() -> None:
    """A rebuild that read the database before message 12 keeps 12 once it is counted."""
    _load(1, pointer=10, ids=[11])
    _unread(1, 12)
    _load(1, pointer=10, ids=[11])  # a stale snapshot arriving late
    assert _count(1) == 2


def test_forget_drops_every_set_of_the_user() -> None:
    _load(1, ids=[1, 2])
    counters.forget_users([1])
    assert counters.user_state(user_id=1, room_ids=[ROOM]) is None
    _load(1, ids=[2])
    assert _count(1) == 1  # id 1 (say, a deleted message) did not come back


# --- mentions and levels ----------------------------------------------------------------------


def _state(user_id: int) -> counters.UserState:
    state = counters.user_state(user_id=user_id, room_ids=[ROOM])
    assert state is not None
    return state


def _message(user_id: int, message_id: int, mode: str, cap: int = CAP) -> counters.Badge:
    return counters.apply_message(
        room_id=ROOM, message_id=message_id, modes={user_id: mode}, cap=cap
    )[user_id]


def test_mentions_trimmed_past_the_cap_still_count_until_read() -> None:
    _load(1)
    for message_id, mode in ((1, "mention"), (2, "mention"), (3, "unread"), (4, "unread")):
        _message(1, message_id, mode, cap=2)
    last = _message(1, 5, "mention", cap=2)
    assert (last.room_count, last.room_mentions, last.total, last.total_mentions) == (5, 3, 5, 3)
    read = counters.apply_read(user_id=1, room_id=ROOM, read_upto=4, cap=2)
    assert (read.room_count, read.room_mentions, read.total, read.total_mentions) == (1, 1, 1, 1)


def test_a_room_at_mentions_adds_only_its_mentions_and_at_none_nothing() -> None:
    counters.load_users({1: [RoomTruth(ROOM, 0, 0, [], level="mentions")]}, cap=CAP)
    plain = _message(1, 10, "unread")
    assert plain.status is Status.CHANGED  # the room's count changed: devices hear of it
    assert (plain.room_count, plain.total, plain.total_mentions) == (1, 0, 0)
    mention = _message(1, 11, "mention")
    assert (mention.room_count, mention.room_mentions, mention.total) == (2, 1, 1)
    counters.forget_users([1])
    counters.load_users(
        {1: [RoomTruth(ROOM, 0, 2, [11, 10], level="none", mention_count=1, mention_ids=[11])]},
        cap=CAP,
    )
    state = _state(1)
    assert (state.total, state.total_mentions, state.rooms[ROOM], state.mentions[ROOM]) == (
        0,
        0,
        2,
        1,
    )
    assert state.levels[ROOM] == "none"
    after = _message(1, 12, "mention")
    assert (after.total, after.total_mentions, after.room_mentions) == (0, 0, 2)


def test_a_load_past_the_cap_keeps_the_trimmed_mentions_counted() -> None:
    counters.load_users(
        {1: [RoomTruth(ROOM, 0, 10, [10, 9, 8], mention_count=4, mention_ids=[9])]}, cap=3
    )
    state = _state(1)
    assert (state.rooms[ROOM], state.mentions[ROOM], state.total_mentions) == (10, 4, 4)
    read = counters.apply_read(user_id=1, room_id=ROOM, read_upto=8, cap=3)
    assert (read.room_count, read.room_mentions) == (2, 1)


def test_a_load_read_before_the_user_was_forgotten_is_refused() -> None:
    _load(1)
    _unread(1, 10)
    epochs = counters.epochs([1])
    counters.forget_users([1])  # a delete committed after the database was read
    stale = {1: [RoomTruth(ROOM, 0, 1, [10])]}
    assert counters.load_users(stale, cap=CAP, epochs=epochs) == {1}
    assert counters.user_state(user_id=1, room_ids=[ROOM]) is None
    fresh = {1: [RoomTruth(ROOM, 0, 0, [])]}
    assert counters.load_users(fresh, cap=CAP, epochs=counters.epochs([1])) == set()
    assert _count(1) == 0


def test_an_event_for_a_room_the_copy_does_not_hold_forgets_the_user() -> None:
    # Loaded without room 8: the user left it (or joined it since); a late message there must
    # not count, so the copy is dropped and the database decides.
    counters.load_users({1: [RoomTruth(ROOM, 0, 0, [])]}, cap=CAP)
    late = counters.apply_message(room_id=8, message_id=50, modes={1: "unread"}, cap=CAP)[1]
    assert late.status is Status.MISSING
    assert counters.user_state(user_id=1, room_ids=[ROOM]) is None


def test_user_totals_reads_each_total_and_who_redis_does_not_hold() -> None:
    _load(1, ids=[3, 4])
    counters.load_users({2: [RoomTruth(ROOM, 0, 1, [5], level="none")]}, cap=CAP)
    _load(3)
    counters.forget_users([3])
    assert counters.user_totals([1, 2, 3, 4]) == {1: 2, 2: 0, 3: None, 4: None}
    assert counters.user_totals([]) == {}


# --- several messages in one call (a lane's backlog) ------------------------------------------


def test_a_user_changed_twice_in_one_call_gets_growing_versions() -> None:
    """A call reads Redis' clock once: max(old + 1, now) must still grow for each change."""
    _load(1)
    _load(2)
    first, second, third = counters.apply_messages(
        [
            counters.MessageApply(ROOM, 10, {1: "unread", 2: "unread"}),
            counters.MessageApply(ROOM, 11, {1: "mention"}),
            counters.MessageApply(ROOM, 12, {2: "same", 1: "read"}),
        ],
        cap=CAP,
    )
    assert first[1].version < second[1].version < third[1].version
    assert (second[1].room_count, second[1].room_mentions, second[1].total) == (2, 1, 2)
    assert (third[1].status, third[1].room_count, third[1].total) == (Status.CHANGED, 0, 0)
    assert (third[2].status, third[2].version) == (Status.UNCHANGED, first[2].version)
    assert _state(1).version == third[1].version


def test_messages_in_one_call_count_as_one_call_each() -> None:
    """`apply_messages` and `apply_message` share the member's Lua; the replies are read back
    per message and member, whatever the sizes (trimming past the cap included)."""
    steps = [
        (ROOM, 5, {1: "unread", 2: "mention", 3: "same"}),
        (ROOM, 6, {2: "unread"}),
        (ROOM, 7, {1: "mention", 2: "read", 3: "unread"}),
        (ROOM, 8, {1: "unread", 3: "mention"}),
        (8, 9, {3: "unread", 1: "unread"}),  # not a room of theirs: both are forgotten
        (ROOM, 10, {2: "unread", 1: "unread"}),
    ]

    def counts(badges: dict[int, counters.Badge]) -> dict[int, tuple[int, ...]]:
        return {
            user_id: (b.status, b.room_count, b.room_mentions, b.total, b.total_mentions)
            for user_id, b in badges.items()
        }

    for user_id in (1, 2, 3):
        _load(user_id, ids=[1, 2])
    one_call = counters.apply_messages([counters.MessageApply(*step) for step in steps], cap=2)
    counters.forget_users([1, 2, 3])
    for user_id in (1, 2, 3):
        _load(user_id, ids=[1, 2])
    one_each = [
        counters.apply_message(room_id=room, message_id=message_id, modes=modes, cap=2)
        for room, message_id, modes in steps
    ]
    assert [counts(badges) for badges in one_call] == [counts(badges) for badges in one_each]
    assert [list(badges) for badges in one_call] == [list(modes) for _, _, modes in steps]
    assert counts(one_call[2])[1] == (Status.CHANGED, 4, 1, 4, 1)  # 2 of them trimmed
