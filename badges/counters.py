"""Unread counters in Redis: the `badges:u:{user}` key family and its Lua scripts, owned here.

Per user, a hash `badges:u:{user}` holds `loaded`, `total`, `version` and per room `p:{room}`
(read pointer), and a sorted set `badges:u:{user}:r:{room}` holds the ids of that room's
unread messages. A room's count is the set's size (plus `n:{room}` ids trimmed off the
bottom past the cap, all at or below `f:{room}`).

Keeping ids rather than a bare integer is what makes the counts exact under any ordering:
adding an id is idempotent (a retried event never counts twice), and "read up to P" removes
ids <= P whichever arrives first, so concurrent sends, reads and rebuilds commute. A user
whose hash is missing (Redis flushed or restarted, or forgotten) is rebuilt from the
database, the truth; the one state Redis cannot settle on its own (an id in the trimmed
region) forgets the user so the database decides.

`version` grows with every change: max(old + 1, Redis time in microseconds), so it keeps
growing even after a flush wipes the old value.
"""

from dataclasses import dataclass
from enum import IntEnum
from functools import cache

from redis.commands.core import Script

from chatproject.redis_client import prefixed, redis_connection

_LUA_HELPERS = """
local function hnum(h, f) return tonumber(redis.call('HGET', h, f) or '0') end

local function bump_version(h)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('HSET', h, 'version', math.max(hnum(h, 'version') + 1, now))
end

local function trim(h, z, room, cap)
  local excess = redis.call('ZCARD', z) - cap
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', z, excess)
    redis.call('HINCRBY', h, 'n:' .. room, excess)
    redis.call('HSET', h, 'f:' .. room, popped[#popped])
  end
end

local function room_count(h, z, room) return hnum(h, 'n:' .. room) + redis.call('ZCARD', z) end

-- 1 unchanged, 2 changed, 3 unknowable here: forget the user
local function add_unread(h, z, room, id, cap)
  if id <= hnum(h, 'p:' .. room) then return 1 end
  if id <= hnum(h, 'f:' .. room) then return 3 end
  if redis.call('ZADD', z, id, id) == 0 then return 1 end
  redis.call('HINCRBY', h, 'total', 1)
  trim(h, z, room, cap)
  return 2
end

local function read_upto(h, z, room, upto)
  local pointer = hnum(h, 'p:' .. room)
  if upto > pointer then redis.call('HSET', h, 'p:' .. room, upto) else upto = pointer end
  local removed = redis.call('ZREMRANGEBYSCORE', z, '-inf', upto)
  local trimmed = hnum(h, 'n:' .. room)
  if trimmed > 0 then
    if upto < hnum(h, 'f:' .. room) then return 3 end
    removed = removed + trimmed
    redis.call('HDEL', h, 'n:' .. room, 'f:' .. room)
  end
  if removed == 0 then return 1 end
  redis.call('HINCRBY', h, 'total', -removed)
  return 2
end
"""

# One member's change for one message, appended to `out` as status, room count, total, version
# (zeros when Redis does not hold the user, or dropped them): shared by `_APPLY` and `_APPLY_MANY`.
_LUA_APPLY_MEMBER = """
local function apply_member(h, z, mode, room, id, cap, out)
  local status = 1
  if redis.call('EXISTS', h) == 0 then
    status = 0
  elseif mode == 'unread' then
    status = add_unread(h, z, room, id, cap)
  elseif mode == 'read' then
    status = read_upto(h, z, room, id)
  end
  if status == 3 then redis.call('DEL', h, z) end
  if status == 2 then bump_version(h) end
  if status == 0 or status == 3 then
    table.insert(out, 0); table.insert(out, 0); table.insert(out, 0); table.insert(out, 0)
  else
    table.insert(out, status)
    table.insert(out, room_count(h, z, room))
    table.insert(out, hnum(h, 'total'))
    table.insert(out, hnum(h, 'version'))
  end
end
"""

# KEYS: hash, set of each user. ARGV: room, message id, cap, then each user's mode:
# "unread" (a recipient), "read" (viewing the room: read up to the message), "same" (sender).
# Returns status, room count, total, version for each user.
_APPLY = (
    _LUA_HELPERS
    + _LUA_APPLY_MEMBER
    + """
local room, id, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS / 2 do
  apply_member(KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 + i], room, id, cap, out)
end
return out
"""
)

# `_APPLY` for several messages at once (a lane's backlog, chatproject/lanes.py), in order.
# KEYS: hash, set of each member of each message. ARGV: cap, then per message: room, message id,
# k, then the k members' modes. Returns status, room count, total, version per member.
_APPLY_MANY = (
    _LUA_HELPERS
    + _LUA_APPLY_MEMBER
    + """
local cap, a, key, out = tonumber(ARGV[1]), 2, 1, {}
while a <= #ARGV do
  local room, id, k = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  for i = 1, k do
    apply_member(KEYS[key], KEYS[key + 1], ARGV[a], room, id, cap, out)
    key = key + 2
    a = a + 1
  end
end
return out
"""
)

# Merge a snapshot of the database into one user's state (union of unread ids, highest
# pointer), so a rebuild racing with live messages loses none of them.
# KEYS: hash, then each room's set. ARGV: cap, then per room: room, pointer, trimmed count,
# trimmed floor, k, then k unread ids.
_LOAD = (
    _LUA_HELPERS
    + """
local h, cap, a, total = KEYS[1], tonumber(ARGV[1]), 2, 0
for i = 2, #KEYS do
  local z, room = KEYS[i], ARGV[a]
  local pointer, trimmed, floor, k =
    tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  a = a + 5
  for j = a, a + k - 1, 500 do
    local batch = {}
    for m = j, math.min(j + 499, a + k - 1) do
      table.insert(batch, ARGV[m]); table.insert(batch, ARGV[m])
    end
    redis.call('ZADD', z, unpack(batch))
  end
  a = a + k
  if floor > hnum(h, 'f:' .. room) then
    redis.call('HSET', h, 'n:' .. room, trimmed, 'f:' .. room, floor)
  end
  -- Always written: `forget_users` finds a user's sets through these fields.
  pointer = math.max(pointer, hnum(h, 'p:' .. room))
  redis.call('HSET', h, 'p:' .. room, pointer)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', pointer)
  if hnum(h, 'n:' .. room) > 0 and pointer >= hnum(h, 'f:' .. room) then
    redis.call('HDEL', h, 'n:' .. room, 'f:' .. room)
  end
  trim(h, z, room, cap)
  total = total + room_count(h, z, room)
end
redis.call('HSET', h, 'total', total, 'loaded', 1)
bump_version(h)
return {total, hnum(h, 'version')}
"""
)

# KEYS: hash, then each room's set. ARGV: the rooms. Returns loaded, total, version, counts.
_STATE = (
    _LUA_HELPERS
    + """
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then return {0} end
local out = {1, hnum(h, 'total'), hnum(h, 'version')}
for i = 2, #KEYS do table.insert(out, room_count(h, KEYS[i], ARGV[i - 1])) end
return out
"""
)


# KEYS: hash. ARGV: the prefix of the user's set keys. Deletes the hash and every set.
_FORGET = """
local fields = redis.call('HKEYS', KEYS[1])
for _, field in ipairs(fields) do
  if string.sub(field, 1, 2) == 'p:' then redis.call('DEL', ARGV[1] .. string.sub(field, 3)) end
end
return redis.call('DEL', KEYS[1])
"""


class Status(IntEnum):
    MISSING = 0  # not in Redis (or just forgotten): rebuild from the database
    UNCHANGED = 1
    CHANGED = 2


@dataclass(frozen=True)
class Badge:
    status: Status
    room_count: int
    total: int
    version: int


@dataclass(frozen=True)
class UserState:
    total: int
    version: int
    rooms: dict[int, int]


@dataclass(frozen=True)
class RoomTruth:
    """One room of a user as the database has it, for `load_users`."""

    room_id: int
    pointer: int
    unread_count: int
    newest_unread_ids: list[int]  # at most `cap` of them, newest first


def _user_key(user_id: int) -> str:
    return prefixed("badges", "u", user_id)


def _room_key(user_id: int, room_id: int | str) -> str:
    return prefixed("badges", "u", user_id, "r", room_id)


@cache
def _script(source: str) -> Script:
    return redis_connection().register_script(source)


def apply_message(
    *, room_id: int, message_id: int, modes: dict[int, str], cap: int
) -> dict[int, Badge]:
    """One round trip for all members: each mode is "unread", "read" or "same"."""
    keys: list[str] = []
    for user_id in modes:
        keys += [_user_key(user_id), _room_key(user_id, room_id)]
    flat = _script(_APPLY)(keys=keys, args=[room_id, message_id, cap, *modes.values()])
    return {
        user_id: Badge(Status(flat[4 * i]), *flat[4 * i + 1 : 4 * i + 4])
        for i, user_id in enumerate(modes)
    }


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
        for user_id in apply.modes:
            keys += [_user_key(user_id), _room_key(user_id, apply.room_id)]
        args += [apply.room_id, apply.message_id, len(apply.modes), *apply.modes.values()]
    flat = _script(_APPLY_MANY)(keys=keys, args=args)
    results: list[dict[int, Badge]] = []
    at = 0
    for apply in applies:
        badges = {}
        for user_id in apply.modes:
            badges[user_id] = Badge(Status(flat[at]), *flat[at + 1 : at + 4])
            at += 4
        results.append(badges)
    return results


def apply_read(*, user_id: int, room_id: int, read_upto: int, cap: int) -> Badge:
    return apply_message(room_id=room_id, message_id=read_upto, modes={user_id: "read"}, cap=cap)[
        user_id
    ]


def load_users(truths: dict[int, list[RoomTruth]], *, cap: int) -> None:
    """Merge the database's view of these users into Redis, in one pipeline."""
    pipe = redis_connection().pipeline(transaction=False)
    for user_id, rooms in truths.items():
        keys, args = _load_arguments(user_id, rooms, cap)
        _script(_LOAD)(keys=keys, args=args, client=pipe)
    pipe.execute()


def _load_arguments(user_id: int, rooms: list[RoomTruth], cap: int) -> tuple[list[str], list[int]]:
    keys = [_user_key(user_id)]
    args: list[int] = [cap]
    for room in rooms:
        kept = room.newest_unread_ids[:cap]
        trimmed = room.unread_count - len(kept) if room.unread_count > cap else 0
        # Everything below the oldest kept id is trimmed; ids at or below the floor are the
        # trimmed ones, so the floor is just under the oldest kept id.
        floor = (min(kept) - 1) if trimmed > 0 and kept else 0
        keys.append(_room_key(user_id, room.room_id))
        args += [room.room_id, room.pointer, trimmed if floor else 0, floor, len(kept), *kept]
    return keys, args


def user_state(*, user_id: int, room_ids: list[int]) -> UserState | None:
    """The user's counts, or None when Redis does not hold them."""
    return user_states({user_id: room_ids})[user_id]


def user_states(rooms_of_users: dict[int, list[int]]) -> dict[int, UserState | None]:
    """`user_state` for several users in one pipeline."""
    pipe = redis_connection().pipeline(transaction=False)
    for user_id, room_ids in rooms_of_users.items():
        keys = [_user_key(user_id), *(_room_key(user_id, room_id) for room_id in room_ids)]
        _script(_STATE)(keys=keys, args=room_ids, client=pipe)
    states: dict[int, UserState | None] = {}
    for (user_id, room_ids), flat in zip(rooms_of_users.items(), pipe.execute(), strict=True):
        states[user_id] = (
            UserState(flat[1], flat[2], dict(zip(room_ids, flat[3:], strict=True)))
            if flat[0]
            else None
        )
    return states


def forget_users(user_ids: list[int]) -> None:
    """Drop users' state; the next read or message rebuilds it from the database."""
    forget = _script(_FORGET)
    pipe = redis_connection().pipeline(transaction=False)
    for user_id in user_ids:
        forget(keys=[_user_key(user_id)], args=[_room_key(user_id, "")], client=pipe)
    pipe.execute()
