"""The push queue: the `notifications:push:*` key family, owned here alone.

The message receiver LPUSHes a job (one round trip, never waits on a push service); the
worker moves each job atomically to its own processing list while it works on it, so a
worker killed mid-push finds its jobs again when it restarts, and a job that fails goes to a
dead-letter list instead of vanishing. Retries with backoff are the next step (ROADMAP 3).
"""

import json

from redis.asyncio import Redis as AsyncRedis

from chatproject.redis_client import prefixed, redis_connection
from notifications.events import PushJob


def queue_key() -> str:
    return prefixed("notifications", "push", "queue")


def processing_key(worker: str) -> str:
    return prefixed("notifications", "push", "processing", worker)


def dead_key() -> str:
    return prefixed("notifications", "push", "dead")


def push_enqueue(job: PushJob) -> None:
    redis_connection().lpush(queue_key(), json.dumps(job))


def queue_length() -> int:
    return int(redis_connection().llen(queue_key()))


def dead_jobs() -> list[PushJob]:
    return [json.loads(raw) for raw in redis_connection().lrange(dead_key(), 0, -1)]


async def push_take(redis: AsyncRedis, worker: str, block_seconds: float) -> str | None:
    """The oldest job, moved to this worker's processing list; None after `block_seconds`."""
    raw = await redis.blmove(queue_key(), processing_key(worker), block_seconds, "RIGHT", "LEFT")  # type: ignore[arg-type]
    return raw.decode() if isinstance(raw, bytes) else raw


async def push_done(redis: AsyncRedis, worker: str, raw: str) -> None:
    await redis.lrem(processing_key(worker), 1, raw)


async def push_dead(redis: AsyncRedis, worker: str, raw: str) -> None:
    pipe = redis.pipeline(transaction=True)
    pipe.lpush(dead_key(), raw)
    pipe.lrem(processing_key(worker), 1, raw)
    await pipe.execute()


async def push_recover(redis: AsyncRedis, worker: str) -> int:
    """Put back the jobs a previous run of this worker left half-done."""
    moved = 0
    while await redis.lmove(processing_key(worker), queue_key(), "RIGHT", "RIGHT"):
        moved += 1
    return moved
