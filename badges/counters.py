"""Unread counters in Redis: the `badges:u:{user}` key family and its Lua scripts, owned here.

Per user, a hash `badges:u:{user}` holds `loaded`, `total`, `mtotal` (the mention total),
`version` and per room `p:{room}` (read pointer) and `l:{room}` (notification level: 0 all,
1 mentions, 2 none); a sorted set `badges:u:{user}:r:{room}` holds the ids of that room's
unread messages and `badges:u:{user}:m:{room}` those of them that mention the user. A room's
count is the set's size (plus `n:{room}` ids trimmed off the bottom past the cap, all at or
below `f:{room}`, of which `mn:{room}` mentioned the user).

The totals follow the levels (shared/PROTOCOL.md, "Notification level"): a room at `all` adds
its count, at `mentions` its mention count, at `none` nothing; the mention total adds the
mention count of every room not at `none`. Every change of a room moves the totals by what
that room's share moved (`level_shares` before and after the change), so the totals stay the
sums whatever the levels.

Keeping ids rather than a bare integer is what makes the counts exact under any ordering:
adding an id is idempotent (a retried event never counts twice), and "read up to P" removes
ids <= P whichever arrives first, so concurrent sends, reads and rebuilds commute. A user
whose hash is missing (Redis flushed or restarted, or forgotten) is rebuilt from the
database, the truth; the one state Redis cannot settle on its own (an id in the trimmed
region) forgets the user so the database decides.

Forgetting a user bumps their epoch `badges:u:{user}:e`, which outlives the forget; a rebuild
reads the epoch before the database and its load is refused if the epoch moved, so a rebuild
that read the database just before a delete, a mark-unread or a level change committed can
never load that older truth after the change forgot the user.

`version` grows with every change: max(old + 1, Redis time in microseconds), so it keeps
growing even after a flush wipes the old value. A message's call reads the time once for all
its members (and all its messages, for a backlog): the old + 1 keeps a user's versions growing
however often the user changes within one call.

A message costs Redis per member, not per message, so `apply_member` (below) is written for
it: one HMGET of the fields it needs, one ZCARD per set, the counts after the change derived
from what its commands return, and one HSET (`bench/counters_cost.py` measures it).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from typing import NamedTuple

from redis.commands.core import Script

from chatproject.redis_client import prefixed, redis_connection

_LUA_HELPERS = """
local function hnum(h, f) return tonumber(redis.call('HGET', h, f) or '0') end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function bump_version(h)
  redis.call('HSET', h, 'version', math.max(hnum(h, 'version') + 1, now_us()))
end

-- A room's unread and mention counts: its sets plus what was trimmed off their bottom.
local function counts(h, z, m, room)
  return hnum(h, 'n:' .. room) + redis.call('ZCARD', z),
    hnum(h, 'mn:' .. room) + redis.call('ZCARD', m)
end

-- What a room adds to the total and the mention total at its level (0 all, 1 mentions, 2
-- none), given its counts.
local function level_shares(level, c, mc)
  if level == 2 then return 0, 0 end
  if level == 1 then return mc, mc end
  return c, mc
end

local function shares(h, z, m, room)
  local level = hnum(h, 'l:' .. room)
  if level == 2 then return 0, 0 end
  local c, mc = counts(h, z, m, room)
  return level_shares(level, c, mc)
end

-- Keep at most `cap` ids; the mentions among those trimmed are counted in `mn:` likewise.
local function trim(h, z, m, room, cap)
  local excess = redis.call('ZCARD', z) - cap
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', z, excess)
    local floor = popped[#popped]
    redis.call('HINCRBY', h, 'n:' .. room, excess)
    redis.call('HSET', h, 'f:' .. room, floor)
    local gone = redis.call('ZREMRANGEBYSCORE', m, '-inf', floor)
    if gone > 0 then redis.call('HINCRBY', h, 'mn:' .. room, gone) end
  end
end

-- Drop the user: the hash and every room's sets, found through the `p:` fields. The epoch
-- grows, so a rebuild that read the database before this cannot load what it read.
local function forget(h)
  redis.call('INCR', h .. ':e')
  for _, field in ipairs(redis.call('HKEYS', h)) do
    if string.sub(field, 1, 2) == 'p:' then
      local room = string.sub(field, 3)
      redis.call('DEL', h .. ':r:' .. room, h .. ':m:' .. room)
    end
  end
  return redis.call('DEL', h)
end
"""

# One member's change for one message, appended to `out` as status, room count, room mention
# count, total, mention total, version (zeros when Redis does not hold the user, or dropped
# them): shared by `_APPLY` and `_APPLY_MANY`. It runs once per member, hence its shape (the
# module docstring): `fields` is `room_fields(room)`, built once per message, and `now` the
# call's one TIME. Status: 1 unchanged, 2 changed, 3 unknowable here (forget the user). A
# read moves the pointer even when it removes nothing (status 1).
_LUA_APPLY_MEMBER = """
-- The fields `apply_member` reads, for HMGET, by room.
local function room_fields(room)
  return {'loaded', 'p:' .. room, 'l:' .. room, 'n:' .. room, 'mn:' .. room, 'f:' .. room,
    'total', 'mtotal', 'version'}
end

local function apply_member(h, z, m, mode, room, fields, id, cap, now, out)
  local k = #out
  local got = redis.call('HMGET', h, unpack(fields))
  local status = 1
  -- `loaded` is written with the hash; without it, whether the hash exists decides.
  if not got[1] and redis.call('EXISTS', h) == 0 then
    status = 0
  elseif mode ~= 'same' and not got[2] then
    -- Not a room this copy was loaded with: the user joined it since (the copy is about to
    -- be reloaded) or left it (a late event must not count it). The database decides.
    status = 3
  end
  if status == 0 or status == 3 then
    if status == 3 then forget(h) end
    for i = k + 1, k + 6 do out[i] = 0 end
    return
  end
  local pointer, level = tonumber(got[2] or '0'), tonumber(got[3] or '0')
  local trimmed, mtrimmed = tonumber(got[4] or '0'), tonumber(got[5] or '0')
  local floor = tonumber(got[6] or '0')
  local total, mtotal = tonumber(got[7] or '0'), tonumber(got[8] or '0')
  local version = tonumber(got[9] or '0')
  local zc, mc = redis.call('ZCARD', z), redis.call('ZCARD', m)
  local t0, m0 = level_shares(level, trimmed + zc, mtrimmed + mc)
  local writes = {}
  if mode == 'read' then
    local upto = id
    if upto > pointer then
      writes[#writes + 1] = fields[2]; writes[#writes + 1] = upto
    else
      upto = pointer
    end
    local removed = redis.call('ZREMRANGEBYSCORE', z, '-inf', upto)
    zc = zc - removed
    mc = mc - redis.call('ZREMRANGEBYSCORE', m, '-inf', upto)
    if trimmed > 0 then
      if upto < floor then status = 3 else
        removed = removed + trimmed
        trimmed, mtrimmed = 0, 0
        redis.call('HDEL', h, fields[4], fields[6], fields[5])
      end
    end
    if status ~= 3 and removed > 0 then status = 2 end
  elseif mode ~= 'same' then
    if id <= pointer then
      status = 1
    elseif id <= floor then
      status = 3
    elseif redis.call('ZADD', z, id, id) == 1 then
      status = 2
      zc = zc + 1
      if mode == 'mention' then mc = mc + redis.call('ZADD', m, id, id) end
      -- Keep at most `cap` ids; the mentions among those trimmed are counted in `mn:`.
      local excess = zc - cap
      if excess > 0 then
        local popped = redis.call('ZPOPMIN', z, excess)
        local gone = redis.call('ZREMRANGEBYSCORE', m, '-inf', popped[#popped])
        zc, trimmed, mc = cap, trimmed + excess, mc - gone
        writes[#writes + 1] = fields[4]; writes[#writes + 1] = trimmed
        writes[#writes + 1] = fields[6]; writes[#writes + 1] = popped[#popped]
        if gone > 0 then
          mtrimmed = mtrimmed + gone
          writes[#writes + 1] = fields[5]; writes[#writes + 1] = mtrimmed
        end
      end
    end
  end
  if status == 3 then
    forget(h)
    for i = k + 1, k + 6 do out[i] = 0 end
    return
  end
  local c, mcount = trimmed + zc, mtrimmed + mc
  if status == 2 then
    -- Move the totals by what the room's shares moved, so they stay the sums.
    local t1, m1 = level_shares(level, c, mcount)
    if t1 ~= t0 then
      total = total + t1 - t0
      writes[#writes + 1] = 'total'; writes[#writes + 1] = total
    end
    if m1 ~= m0 then
      mtotal = mtotal + m1 - m0
      writes[#writes + 1] = 'mtotal'; writes[#writes + 1] = mtotal
    end
    version = math.max(version + 1, now)
    writes[#writes + 1] = 'version'; writes[#writes + 1] = version
  end
  if #writes > 0 then redis.call('HSET', h, unpack(writes)) end
  out[k + 1], out[k + 2], out[k + 3] = status, c, mcount
  out[k + 4], out[k + 5], out[k + 6] = total, mtotal, version
end
"""

# KEYS: hash, unread set, mention set of each user. ARGV: room, message id, cap, then each
# user's mode: "unread" or "mention" (a recipient, mentioned or not), "read" (viewing the room:
# read up to the message), "same" (sender). Returns `_LUA_APPLY_MEMBER`'s six per user.
_APPLY = (
    _LUA_HELPERS
    + _LUA_APPLY_MEMBER
    + """
local room, id, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local fields, now, out = room_fields(room), now_us(), {}
for i = 1, #KEYS / 3 do
  apply_member(KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[3 + i], room, fields, id,
    cap, now, out)
end
return out
"""
)

# `_APPLY` for several messages at once (a lane's backlog, chatproject/lanes.py), in order.
# KEYS: hash, unread set, mention set of each member of each message. ARGV: cap, then per
# message: room, message id, k, then the k members' modes. Returns six per member.
_APPLY_MANY = (
    _LUA_HELPERS
    + _LUA_APPLY_MEMBER
    + """
local cap, a, key, now, out = tonumber(ARGV[1]), 2, 1, now_us(), {}
while a <= #ARGV do
  local room, id, k = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local fields = room_fields(room)
  a = a + 3
  for i = 1, k do
    apply_member(KEYS[key], KEYS[key + 1], KEYS[key + 2], ARGV[a], room, fields, id, cap, now,
      out)
    key = key + 3
    a = a + 1
  end
end
return out
"""
)

# Merge a snapshot of the database into one user's state (union of unread and mention ids,
# highest pointer; the level as the database has it), so a rebuild racing with live messages
# loses none of them.
# KEYS: hash, epoch, then each room's unread set and mention set. ARGV: cap, the epoch read
# before the database was (-1: do not check), then per room: room, pointer, level, trimmed
# count, trimmed floor, trimmed mention count, k, k unread ids, j, j mention ids. Returns
# {-1} and loads nothing when the user was forgotten since that epoch: what was read may be
# older than the change that forgot them.
_LOAD = (
    _LUA_HELPERS
    + """
local function zadd_all(key, from, k)
  for j = from, from + k - 1, 500 do
    local batch = {}
    for i = j, math.min(j + 499, from + k - 1) do
      table.insert(batch, ARGV[i]); table.insert(batch, ARGV[i])
    end
    redis.call('ZADD', key, unpack(batch))
  end
end

local h, cap, a, total, mtotal = KEYS[1], tonumber(ARGV[1]), 3, 0, 0
local epoch = tonumber(ARGV[2])
if epoch >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') ~= epoch then return {-1} end
for i = 3, #KEYS, 2 do
  local z, m, room = KEYS[i], KEYS[i + 1], ARGV[a]
  local pointer, level, trimmed, floor, mtrimmed, k = tonumber(ARGV[a + 1]),
    ARGV[a + 2], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]),
    tonumber(ARGV[a + 6])
  a = a + 7
  zadd_all(z, a, k)
  a = a + k
  local j = tonumber(ARGV[a])
  zadd_all(m, a + 1, j)
  a = a + 1 + j
  redis.call('HSET', h, 'l:' .. room, level)
  if floor > hnum(h, 'f:' .. room) then
    redis.call('HSET', h, 'n:' .. room, trimmed, 'f:' .. room, floor, 'mn:' .. room, mtrimmed)
  end
  -- Always written: `forget` finds a user's sets through these fields.
  pointer = math.max(pointer, hnum(h, 'p:' .. room))
  redis.call('HSET', h, 'p:' .. room, pointer)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', pointer)
  redis.call('ZREMRANGEBYSCORE', m, '-inf', pointer)
  if hnum(h, 'n:' .. room) > 0 and pointer >= hnum(h, 'f:' .. room) then
    redis.call('HDEL', h, 'n:' .. room, 'f:' .. room, 'mn:' .. room)
  end
  trim(h, z, m, room, cap)
  local t, mt = shares(h, z, m, room)
  total = total + t
  mtotal = mtotal + mt
end
redis.call('HSET', h, 'total', total, 'mtotal', mtotal, 'loaded', 1)
bump_version(h)
return {total, hnum(h, 'version')}
"""
)

# KEYS: hash, then each room's unread set and mention set. ARGV: the rooms. Returns loaded,
# total, mention total, version, then each room's count, mention count and level.
_STATE = (
    _LUA_HELPERS
    + """
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then return {0} end
local out = {1, hnum(h, 'total'), hnum(h, 'mtotal'), hnum(h, 'version')}
for i = 2, #KEYS, 2 do
  local c, mc = counts(h, KEYS[i], KEYS[i + 1], ARGV[i / 2])
  table.insert(out, c)
  table.insert(out, mc)
  table.insert(out, hnum(h, 'l:' .. ARGV[i / 2]))
end
return out
"""
)


# KEYS: users' hashes. Returns each user's total, or -1 for a user Redis does not hold.
_TOTALS = """
local out = {}
for i, h in ipairs(KEYS) do
  local loaded, total = unpack(redis.call('HMGET', h, 'loaded', 'total'))
  out[i] = loaded and tonumber(total or '0') or -1
end
return out
"""

# KEYS: hash. Deletes the hash and every set of the user.
_FORGET = _LUA_HELPERS + "return forget(KEYS[1])"


class Status(IntEnum):
    MISSING = 0  # not in Redis (or just forgotten): rebuild from the database
    UNCHANGED = 1
    CHANGED = 2


_STATUSES = tuple(Status)  # indexed by the Lua status code: a lookup per member, not an enum call


# The notification levels as the hash stores them (`l:{room}`); chat.models.Level's values.
LEVELS = {"all": 0, "mentions": 1, "none": 2}
LEVEL_NAMES = {number: name for name, number in LEVELS.items()}


class Badge(NamedTuple):
    """One member's counts after a change; a tuple, as `apply_message` makes one per member."""

    status: Status
    room_count: int
    room_mentions: int
    total: int
    total_mentions: int
    version: int


@dataclass(frozen=True)
class UserState:
    total: int
    version: int
    rooms: dict[int, int]
    total_mentions: int = 0
    mentions: dict[int, int] = field(default_factory=dict)
    levels: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RoomTruth:
    """One room of a user as the database has it, for `load_users`."""

    room_id: int
    pointer: int
    unread_count: int
    newest_unread_ids: list[int]  # at most `cap` of them, newest first
    level: str = "all"
    mention_count: int = 0
    mention_ids: list[int] = field(default_factory=list)  # those of `newest_unread_ids`


def _users_prefix() -> str:
    """What every key of the family starts with: `{REDIS_KEY_PREFIX}:badges:u:`."""
    return prefixed("badges", "u", "")


def _user_key(user_id: int) -> str:
    return f"{_users_prefix()}{user_id}"


def _epoch_key(user_id: int) -> str:
    """How many times the user was forgotten (`forget` in Lua builds the same name)."""
    return f"{_user_key(user_id)}:e"


def _room_keys(user_id: int, room_id: int) -> list[str]:
    """The room's unread set and mention set (`forget` in Lua builds the same names)."""
    user_key = _user_key(user_id)
    return [f"{user_key}:r:{room_id}", f"{user_key}:m:{room_id}"]


def _members_keys(user_ids: Iterable[int], room_id: int, into: list[str]) -> None:
    """`_user_key` and `_room_keys` of each user, appended to `into`: by concatenation from one
    prefix, as a 1,000-member room builds 3,000 of them per message."""
    prefix, unread, mentions = _users_prefix(), f":r:{room_id}", f":m:{room_id}"
    for user_id in user_ids:
        user_key = prefix + str(user_id)
        into += (user_key, user_key + unread, user_key + mentions)


@cache
def _script(source: str) -> Script:
    return redis_connection().register_script(source)


def _badges(rows: Iterator[tuple[int, ...]], user_ids: Iterable[int]) -> dict[int, Badge]:
    """The next of `_APPLY`'s rows of six, one per user: zip takes a user first, so it stops at
    the users' end without taking a row (`apply_messages` shares `rows` between messages)."""
    return {
        user_id: Badge(_STATUSES[status], count, mentions, total, total_mentions, version)
        for user_id, (status, count, mentions, total, total_mentions, version) in zip(
            user_ids, rows, strict=False
        )
    }


def _rows(flat: list[int]) -> Iterator[tuple[int, ...]]:
    return zip(*[iter(flat)] * 6, strict=True)


def apply_message(
    *, room_id: int, message_id: int, modes: dict[int, str], cap: int
) -> dict[int, Badge]:
    """One round trip for all members: each mode is "unread", "mention", "read" or "same"."""
    keys: list[str] = []
    _members_keys(modes, room_id, keys)
    flat = _script(_APPLY)(keys=keys, args=[room_id, message_id, cap, *modes.values()])
    return _badges(_rows(flat), modes)


@dataclass(frozen=True)
class MessageApply:
    """One message for `apply_messages`: its room, id and each member's mode."""

    room_id: int
    message_id: int
    modes: dict[int, str]


def apply_messages(applies: list[MessageApply], *, cap: int) -> list[dict[int, Badge]]:
    """`apply_message` for several messages in one round trip, applied in this order."""
    keys: list[str] = []
    args: list[int | str] = [cap]
    for apply in applies:
        _members_keys(apply.modes, apply.room_id, keys)
        args += [apply.room_id, apply.message_id, len(apply.modes), *apply.modes.values()]
    flat = _script(_APPLY_MANY)(keys=keys, args=args)
    rows = _rows(flat)
    return [_badges(rows, apply.modes) for apply in applies]


def apply_read(*, user_id: int, room_id: int, read_upto: int, cap: int) -> Badge:
    return apply_message(room_id=room_id, message_id=read_upto, modes={user_id: "read"}, cap=cap)[
        user_id
    ]


def epochs(user_ids: list[int]) -> dict[int, int]:
    """Each user's epoch, to read before reading their truth from the database: a load with it
    is refused if they were forgotten in between (`load_users`)."""
    if not user_ids:
        return {}
    values = redis_connection().mget([_epoch_key(user_id) for user_id in user_ids])
    return {user_id: int(value or 0) for user_id, value in zip(user_ids, values, strict=True)}


def load_users(
    truths: dict[int, list[RoomTruth]], *, cap: int, epochs: dict[int, int] | None = None
) -> set[int]:
    """Merge the database's view of these users into Redis, in one pipeline. Given the epochs
    read before the database was, users forgotten since are not loaded: they are returned, for
    the caller to read again (a change that forgets a user is newer than what was read)."""
    pipe = redis_connection().pipeline(transaction=False)
    for user_id, rooms in truths.items():
        epoch = -1 if epochs is None else epochs.get(user_id, 0)
        keys, args = _load_arguments(user_id, rooms, cap, epoch)
        _script(_LOAD)(keys=keys, args=args, client=pipe)
    results = pipe.execute()
    return {user_id for user_id, result in zip(truths, results, strict=True) if result[0] == -1}


def _load_arguments(
    user_id: int, rooms: list[RoomTruth], cap: int, epoch: int
) -> tuple[list[str], list[int]]:
    keys = [_user_key(user_id), _epoch_key(user_id)]
    args: list[int] = [cap, epoch]
    for room in rooms:
        kept = room.newest_unread_ids[:cap]
        trimmed = room.unread_count - len(kept) if room.unread_count > cap else 0
        # Everything below the oldest kept id is trimmed; ids at or below the floor are the
        # trimmed ones, so the floor is just under the oldest kept id.
        floor = (min(kept) - 1) if trimmed > 0 and kept else 0
        mentions = [message_id for message_id in room.mention_ids if message_id > floor]
        trimmed_mentions = room.mention_count - len(mentions) if floor else 0
        keys += _room_keys(user_id, room.room_id)
        args += [room.room_id, room.pointer, LEVELS[room.level]]
        args += [trimmed if floor else 0, floor, trimmed_mentions, len(kept), *kept]
        args += [len(mentions), *mentions]
    return keys, args


def user_state(*, user_id: int, room_ids: list[int]) -> UserState | None:
    """The user's counts, or None when Redis does not hold them."""
    return user_states({user_id: room_ids})[user_id]


def user_states(rooms_of_users: dict[int, list[int]]) -> dict[int, UserState | None]:
    """`user_state` for several users in one pipeline."""
    pipe = redis_connection().pipeline(transaction=False)
    for user_id, room_ids in rooms_of_users.items():
        keys = [_user_key(user_id)]
        for room_id in room_ids:
            keys += _room_keys(user_id, room_id)
        _script(_STATE)(keys=keys, args=room_ids, client=pipe)
    states: dict[int, UserState | None] = {}
    for (user_id, room_ids), flat in zip(rooms_of_users.items(), pipe.execute(), strict=True):
        states[user_id] = (
            UserState(
                total=flat[1],
                version=flat[3],
                rooms=dict(zip(room_ids, flat[4::3], strict=True)),
                total_mentions=flat[2],
                mentions=dict(zip(room_ids, flat[5::3], strict=True)),
                levels={
                    room_id: LEVEL_NAMES[level]
                    for room_id, level in zip(room_ids, flat[6::3], strict=True)
                },
            )
            if flat[0]
            else None
        )
    return states


def user_totals(user_ids: list[int]) -> dict[int, int | None]:
    """Each user's total, or None when Redis does not hold them, in one call (a push's badge
    needs only the total, not `user_states`' per-room reading)."""
    if not user_ids:
        return {}
    flat = _script(_TOTALS)(keys=[_user_key(user_id) for user_id in user_ids])
    return {
        user_id: total if total >= 0 else None
        for user_id, total in zip(user_ids, flat, strict=True)
    }


def forget_users(user_ids: list[int]) -> None:
    """Drop users' state; the next read or message rebuilds it from the database."""
    forget = _script(_FORGET)
    pipe = redis_connection().pipeline(transaction=False)
    for user_id in user_ids:
        forget(keys=[_user_key(user_id)], client=pipe)
    pipe.execute()
