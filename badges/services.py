"""Badge state changes: apply chat events to the Redis counters and tell every device.

The path of a message: chat's `message_created` → `badges_apply_message` (one Lua call for
all members) → frames to each member's `user.{id}` group through `chatproject.fanout`.
"""

from collections import defaultdict

from badges import counters
from badges.app_settings import app_settings
from badges.counters import Badge, MessageApply, Status, UserState
from badges.events import (
    MESSAGE_BADGES,
    MessageBadgeRow,
    TotalUnreadCountUpdated,
    badge_frames,
    message_badge_row,
    room_updated,
    total_unread_count_updated,
)
from badges.selectors import room_truths_for_users
from chat.events import (
    MessageCreated,
    MessageFrame,
    RoomRead,
    frames_message,
    message_frame,
    user_group,
)
from chatproject import fanout
from chatproject.metrics import COUNTERS_REBUILT

# Reads of the database per rebuild before giving up on users forgotten again each time: they
# stay missing, and the next read of their counts rebuilds them.
_REBUILD_TRIES = 5


def badges_rebuild_users(user_ids: list[int], *, reason: str) -> dict[int, UserState]:
    """Load users' counts from the database into Redis (a few queries and one pipeline for
    any number of users) and return them."""
    cap = app_settings.MAX_TRACKED_UNREAD
    pending = list(user_ids)
    rooms_of: dict[int, list[int]] = {}
    for _ in range(_REBUILD_TRIES):
        # The epochs first: a user forgotten after them (a delete, a mark-unread, a level
        # change committed meanwhile) is not loaded from this older read, but read again.
        epochs = counters.epochs(pending)
        truths = room_truths_for_users(pending, cap=cap)
        rooms_of.update(
            {user_id: [room.room_id for room in rooms] for user_id, rooms in truths.items()}
        )
        pending = sorted(counters.load_users(truths, cap=cap, epochs=epochs))
        if not pending:
            break
    COUNTERS_REBUILT.labels(reason).inc(len(user_ids))
    states = counters.user_states(rooms_of)
    # A user forgotten again in between reads as empty; the next read rebuilds it.
    return {
        user_id: state or UserState(total=0, version=0, rooms={})
        for user_id, state in states.items()
    }


def badges_rebuild_user(*, user_id: int, reason: str) -> UserState:
    return badges_rebuild_users([user_id], reason=reason)[user_id]


def badges_state(*, user_id: int, room_ids: list[int]) -> UserState:
    """The user's counts for these rooms, rebuilt from the database if Redis lost them."""
    state = counters.user_state(user_id=user_id, room_ids=room_ids)
    if state is not None:
        return state
    rebuilt = badges_rebuild_user(user_id=user_id, reason="read")
    return UserState(
        total=rebuilt.total,
        version=rebuilt.version,
        rooms={room_id: rebuilt.rooms.get(room_id, 0) for room_id in room_ids},
        total_mentions=rebuilt.total_mentions,
        mentions={room_id: rebuilt.mentions.get(room_id, 0) for room_id in room_ids},
    )


def badges_totals(*, user_ids: list[int]) -> dict[int, int]:
    """Users' totals in one pipeline; those Redis lost are rebuilt from the database at once."""
    totals = counters.user_totals(user_ids)
    missing = [user_id for user_id, total in totals.items() if total is None]
    rebuilt = badges_rebuild_users(missing, reason="read") if missing else {}
    return {
        user_id: total if total is not None else rebuilt[user_id].total
        for user_id, total in totals.items()
    }


def _badge(state: UserState, room_id: int) -> Badge:
    """A rebuilt user's badge for one room, as a change (its version is new)."""
    return Badge(
        Status.CHANGED,
        state.rooms.get(room_id, 0),
        state.mentions.get(room_id, 0),
        state.total,
        state.total_mentions,
        state.version,
    )


def _rebuilt_badges(
    user_ids: list[int], room_id: int, *, reason: str = "missing"
) -> dict[int, Badge]:
    states = badges_rebuild_users(user_ids, reason=reason) if user_ids else {}
    return {user_id: _badge(state, room_id) for user_id, state in states.items()}


def _modes(event: MessageCreated) -> dict[int, str]:
    viewers, sender_id = set(event["viewer_ids"]), event["sender_id"]
    mentioned = set(event["mentioned_ids"])
    return {
        user_id: "read"
        if user_id in viewers
        else "same"
        if user_id == sender_id
        else "mention"
        if user_id in mentioned
        else "unread"
        for user_id in event["member_ids"]
    }


# Members per Lua call and publish of one message: a large room goes in steps, so Redis
# counts the next step while this process's hub writes the frames of the one before.
_MEMBERS_PER_STEP = 250


def badges_apply_message(event: MessageCreated) -> None:
    """Count a committed message for its members and send each of them their new badge."""
    room_id = event["room_id"]
    members = list(_modes(event).items())
    shared = {"roomId": room_id, "lastMessage": message_frame(event)}
    for start in range(0, len(members), _MEMBERS_PER_STEP):
        last = start + _MEMBERS_PER_STEP >= len(members)
        badges = counters.apply_message(
            room_id=room_id,
            message_id=event["message_id"],
            modes=dict(members[start : start + _MEMBERS_PER_STEP]),
            cap=app_settings.MAX_TRACKED_UNREAD,
        )
        missing = [user_id for user_id, badge in badges.items() if badge.status is Status.MISSING]
        badges.update(_rebuilt_badges(missing, room_id))
        rows = [(user_group(user_id), _row(badge)) for user_id, badge in badges.items()]
        committed_at = event["committed_at"] if last else None
        fanout.publish_built(MESSAGE_BADGES, shared, rows, committed_at=committed_at)


def _row(badge: Badge) -> MessageBadgeRow:
    return message_badge_row(
        count=badge.room_count,
        mentions=badge.room_mentions,
        version=badge.version,
        total=badge.total,
        total_mentions=badge.total_mentions,
        changed=badge.status is Status.CHANGED,
    )


def badges_apply_read(event: RoomRead) -> Badge:
    """Read up to a message: drop those counts and update every device of the user."""
    user_id, room_id = event["user_id"], event["room_id"]
    badge = counters.apply_read(
        user_id=user_id,
        room_id=room_id,
        read_upto=event["read_upto"],
        cap=app_settings.MAX_TRACKED_UNREAD,
    )
    if badge.status is Status.MISSING:
        badge = _rebuilt_badges([user_id], room_id)[user_id]
    if badge.status is Status.CHANGED:
        fanout.publish([(user_group(user_id), frames_message(_total_frame(badge, room_id)))])
    return badge


def badges_forget(user_ids: list[int]) -> None:
    """Someone changed the truth behind these users' counts outside the event flow."""
    counters.forget_users(sorted(set(user_ids)))


def badges_settle_users(user_ids: list[int], *, room_id: int, reason: str) -> dict[int, Badge]:
    """Someone changed what these users' counts of a room should be in a way the counters do
    not apply on their own (a level, an edit's mentions): drop and rebuild them from the
    database, then send each device a `total-unread-count-updated` for the room, with the
    room's `level` (docs/protocol-extensions.md), so another device shows a level change."""
    users = sorted(set(user_ids))
    counters.forget_users(users)
    states = badges_rebuild_users(users, reason=reason)
    badges = {user_id: _badge(state, room_id) for user_id, state in states.items()}
    sends = []
    for user_id, badge in badges.items():
        frame: dict[str, object] = {**_total_frame(badge, room_id)}
        level = states[user_id].levels.get(room_id)
        if level is not None:
            frame["level"] = level
        sends.append((user_group(user_id), frames_message(frame)))
    fanout.publish(sends)
    return badges


def _total_frame(badge: Badge, room_id: int) -> TotalUnreadCountUpdated:
    return total_unread_count_updated(
        total=badge.total,
        total_mentions=badge.total_mentions,
        room_id=room_id,
        room_count=badge.room_count,
        room_mentions=badge.room_mentions,
        version=badge.version,
    )


# Member updates per Lua call and publish for a backlog: enough to spare round trips, few
# enough that one call holds Redis for milliseconds and one publish holds a few MiB of frames.
_MEMBER_UPDATES_PER_CALL = 2_000


def _fresh_counts_frames(
    state: UserState, newest: dict[int, MessageFrame], room_ids: list[int]
) -> list[object]:
    """A rebuilt user's counts for these rooms: each room's count, then one total frame, which
    carries the new version (a version is applied once, so one frame carries it)."""
    frames: list[object] = [
        room_updated(
            room_id,
            newest[room_id],
            state.rooms.get(room_id, 0),
            state.mentions.get(room_id, 0),
            state.version,
        )
        for room_id in room_ids
    ]
    last = room_ids[-1]
    return [*frames, _total_frame(_badge(state, last), last)]


def _newest_messages(events: list[MessageCreated]) -> dict[int, MessageFrame]:
    newest: dict[int, MessageFrame] = {}
    for event in events:
        known = newest.get(event["room_id"])
        if known is None or known["id"] < event["message_id"]:
            newest[event["room_id"]] = message_frame(event)
    return newest


def badges_apply_messages(events: list[MessageCreated]) -> None:
    """`badges_apply_message` for a lane's backlog: one Lua call and one publish per 2,000
    member updates, instead of one each per message. Each member still gets every frame, in
    order, in one message; a connection that is behind coalesces them
    (chatproject/connection_queue.py)."""
    chunk: list[MessageCreated] = []
    updates = 0
    for event in events:
        if chunk and updates + len(event["member_ids"]) > _MEMBER_UPDATES_PER_CALL:
            _apply_chunk(chunk)
            chunk, updates = [], 0
        chunk.append(event)
        updates += len(event["member_ids"])
    if chunk:
        _apply_chunk(chunk)


def _apply_chunk(events: list[MessageCreated]) -> None:
    applies = [MessageApply(e["room_id"], e["message_id"], _modes(e)) for e in events]
    results = counters.apply_messages(applies, cap=app_settings.MAX_TRACKED_UNREAD)
    frames: dict[int, list[object]] = defaultdict(list)
    touched: dict[int, dict[int, None]] = defaultdict(dict)  # user: rooms, in order
    missing: set[int] = set()
    for event, badges in zip(events, results, strict=True):
        last_message = message_frame(event)
        room_id = event["room_id"]
        for user_id, badge in badges.items():
            touched[user_id][room_id] = None
            if badge.status is Status.MISSING:
                missing.add(user_id)
                continue
            frames[user_id] += badge_frames(room_id, last_message, _row(badge))
    if missing:
        newest = _newest_messages(events)
        for user_id, state in badges_rebuild_users(sorted(missing), reason="missing").items():
            # Its earlier frames in this batch, if any, are older than what the rebuild knows.
            frames[user_id] = _fresh_counts_frames(state, newest, list(touched[user_id]))
    sends = [(user_group(user_id), frames_message(*mine)) for user_id, mine in frames.items()]
    fanout.publish(sends, committed_at=[e["committed_at"] for e in events])


class MessagesShed:
    """Stands in for the message events a backed-up lane did not queue (chatproject/lanes.py).

    It keeps only who and where: the members of each room a message went to and the room's
    newest message, so it stays as small as the rooms involved however many messages come.
    Running it forgets those users' counts and rebuilds them from the database, which holds
    every one of those messages, then sends each their fresh counts.
    """

    def __init__(self) -> None:
        self.rooms_of: dict[int, dict[int, None]] = defaultdict(dict)  # user: rooms, in order
        self.newest: dict[int, MessageFrame] = {}

    def add(self, event: MessageCreated) -> None:
        room_id = event["room_id"]
        for user_id in event["member_ids"]:
            self.rooms_of[user_id][room_id] = None
        known = self.newest.get(room_id)
        if known is None or known["id"] < event["message_id"]:
            self.newest[room_id] = message_frame(event)

    def run(self) -> None:
        users = sorted(self.rooms_of)
        counters.forget_users(users)
        states = badges_rebuild_users(users, reason="shed")
        fanout.publish(
            [
                (
                    user_group(user_id),
                    frames_message(
                        *_fresh_counts_frames(state, self.newest, list(self.rooms_of[user_id]))
                    ),
                )
                for user_id, state in states.items()
            ]
        )
