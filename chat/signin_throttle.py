"""Sign-in throttling (shared/PROTOCOL.md, "Running it in production"): the `chat:signin:*`
key family and its scripts, owned here alone.

Per (username, client address), failed sign-ins are kept as a sorted set of their times, the
newest SIGNIN_FAILURE_LIMIT only: a sliding window, so ten failures in any five minutes lock
the pair, whether or not they straddle a clock boundary. While locked every attempt is
refused before the password is checked (the right one too), and a refused attempt does not
count, so the lock ends when the oldest of those failures leaves the window, as the contract
says. Other addresses trying the same username, and other usernames from the same address,
are counted apart. Times are Redis' own (TIME), so processes whose clocks differ agree.

`chat:signin:locked` indexes the pairs locked now (score: when the lock ends), for the admin.
Counting lives in Redis so every server process sees every failure. While Redis is down the
sign-in is not throttled (logged): refusing everyone would be the worse failure.
"""

import hashlib
import json
import logging
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from prometheus_client import Counter
from redis.commands.core import Script
from redis.exceptions import RedisError

from chat.app_settings import app_settings
from chatproject.redis_client import prefixed, redis_connection

logger = logging.getLogger(__name__)

SIGNIN_FAILURES = Counter("signin_failures_total", "Failed sign-ins (page, API and admin).")
SIGNIN_LOCKS = Counter(
    "signin_locks_total", "(username, address) pairs locked by their latest failed sign-in."
)
SIGNIN_REFUSED = Counter("signin_refused_total", "Sign-ins refused because their pair was locked.")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: the pair's failures; ARGV: limit, window seconds. Returns seconds left, or false.
_REMAINING = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then return false end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + tonumber(ARGV[2]) - now)
"""
)

# KEYS: the pair's failures, the locked index; ARGV: limit, window, a unique member, the
# pair's entry in the index. Returns the lock's seconds left when this failure locked it.
_FAILED = (
    _NOW
    + """
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(limit + 1))
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
if redis.call('ZCARD', KEYS[1]) < limit then return false end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local ends = tonumber(oldest[2]) + window
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], ends, ARGV[4])
redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000))
return tostring(ends - now)
"""
)

# KEYS: the locked index. Returns [entry, ends, entry, ends, ...].
_LOCKED = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
"""
)


@dataclass(frozen=True)
class SignInLock:
    username: str
    address: str
    ends_at: datetime


@cache
def _script(source: str) -> Script:
    return redis_connection().register_script(source)


def _pair_key(username: str, address: str) -> str:
    # Hashed: a username is whatever a client typed, of any length and characters. NFKC as
    # the login form normalizes it, so the API's raw string counts toward the same pair.
    typed = unicodedata.normalize("NFKC", username)
    digest = hashlib.sha256(f"{typed}\0{address}".encode()).hexdigest()[:32]
    return prefixed("chat", "signin", "failures", digest)


def _locked_key() -> str:
    return prefixed("chat", "signin", "locked")


def _entry(username: str, address: str) -> str:
    return json.dumps([username, address])


def signin_lock_remaining(*, username: str, address: str) -> float | None:
    """Seconds until this pair may try again, or None when it may try now."""
    limit, window = app_settings.SIGNIN_FAILURE_LIMIT, app_settings.SIGNIN_WINDOW_SECONDS
    if limit <= 0:
        return None
    try:
        remaining = _script(_REMAINING)(keys=[_pair_key(username, address)], args=[limit, window])
    except RedisError as error:
        logger.warning("sign-in throttle unavailable, not throttling (%s)", error)
        return None
    if remaining is None:
        return None
    SIGNIN_REFUSED.inc()
    return max(0.0, float(remaining))


def signin_failure_record(*, username: str, address: str) -> float | None:
    """Count a failed sign-in; the seconds the pair is now locked for, if it just locked."""
    limit, window = app_settings.SIGNIN_FAILURE_LIMIT, app_settings.SIGNIN_WINDOW_SECONDS
    if limit <= 0:
        return None
    SIGNIN_FAILURES.inc()
    keys = [_pair_key(username, address), _locked_key()]
    args: list[str | int] = [limit, window, uuid.uuid4().hex, _entry(username, address)]
    try:
        locked_for = _script(_FAILED)(keys=keys, args=args)
    except RedisError as error:
        logger.warning("sign-in throttle unavailable, failure not counted (%s)", error)
        return None
    if locked_for is None:
        return None
    SIGNIN_LOCKS.inc()
    logger.warning("sign-in locked for %r from %s after %d failures", username, address, limit)
    return float(locked_for)


def signin_locks() -> list[SignInLock]:
    """The pairs locked now, the soonest to end first."""
    flat = _script(_LOCKED)(keys=[_locked_key()], args=[])
    locks = []
    for entry, ends in zip(flat[::2], flat[1::2], strict=True):
        username, address = json.loads(entry)
        locks.append(SignInLock(username, address, datetime.fromtimestamp(float(ends), tz=UTC)))
    return locks


def signin_unlock(*, username: str, address: str) -> None:
    """Forget the pair's failures: it may sign in at once (staff, from the admin)."""
    pipe = redis_connection().pipeline(transaction=True)
    pipe.delete(_pair_key(username, address))
    pipe.zrem(_locked_key(), _entry(username, address))
    pipe.execute()
