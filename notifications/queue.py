"""The push queue: saq on Redis, and the `notifications:push:*` key family, owned here alone.

Why saq: it is a maintained asyncio job queue on Redis that does what a push queue needs and
the old hand-rolled list did not: de-duplication by job key (one job per message, one pending
badge job per user), scheduled jobs (the grace delay, retries at a given time), heartbeats and
a sweeper that re-queues the jobs of a worker that died, and millisecond pickup (BLMOVE).
Its keys live under `saq:<queue name>` and `saq:job:<queue name>`, the queue name starting
with REDIS_KEY_PREFIX, so deployments sharing a Redis stay apart.

Our own keys: the users whose reads wait for a badge job (a sorted set), the channel that
nudges the relay, and the workers' heartbeats.

Web processes never talk to saq: they write the outbox (a database row) and publish a nudge,
or add a user to the badge set; the worker's relay (notifications.relay) makes the jobs.
"""

import asyncio
import hashlib
import logging
import time
from typing import Any

from django.conf import settings
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from saq.job import Status
from saq.queue.redis import RedisQueue

from chatproject.redis_client import prefixed, redis_connection

logger = logging.getLogger(__name__)

MESSAGES_JOB = "push_messages"
MESSAGE_JOB = "push_message"  # one message: the jobs of relays from before batching
BADGE_JOB = "push_badge"
RETRY_JOB = "push_retry"

_HEARTBEAT_KEEP_SECONDS = 3600


def queue_name() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:notifications:push"


def nudge_channel() -> str:
    return prefixed("notifications", "push", "nudge")


def badge_pending_key() -> str:
    return prefixed("notifications", "push", "badge-pending")


def heartbeat_key() -> str:
    return prefixed("notifications", "push", "heartbeat")


def message_job_key(message_id: int) -> str:
    return f"message:{message_id}"


def messages_job_key(message_ids: list[int], newest: float) -> str:
    """Names the batch by all its ids and its newest outbox time: a relay that queues the same
    rows again is refused while the first is unfinished, and a batch that differs by one
    message is another job. So is a message's row written again by an edit (its time is the
    edit's): refused, it would be lost if the message's first job was running then."""
    named = ",".join(map(str, message_ids)) + f"@{round(newest * 1000)}"
    digest = hashlib.blake2b(named.encode(), digest_size=12)
    return f"messages:{message_ids[0]}:{len(message_ids)}:{digest.hexdigest()}"


def badge_job_key(user_id: int) -> str:
    return f"badge:{user_id}"


def retry_job_key(delivery_id: int, attempt: int) -> str:
    return f"retry:{delivery_id}:{attempt}"


# --- the web side: synchronous, one round trip each ------------------------------------


def relay_nudge() -> None:
    """Wake the relays: an outbox row has been committed."""
    redis_connection().publish(nudge_channel(), "outbox")


def badge_request(user_id: int) -> None:
    """The user read something: their devices are owed a silent badge update."""
    pipe = redis_connection().pipeline(transaction=False)
    pipe.zadd(badge_pending_key(), {str(user_id): time.time()}, nx=True)
    pipe.publish(nudge_channel(), "badge")
    pipe.execute()


def queue_depth() -> int:
    """Jobs not finished yet: scheduled (grace delay, retries), queued and running."""
    return int(redis_connection().zcard(f"saq:{queue_name()}:incomplete"))


def heartbeat_age_seconds() -> float | None:
    """Seconds since the most recent heartbeat of any push worker; None if none ever beat."""
    latest: Any = redis_connection().zrevrange(heartbeat_key(), 0, 0, withscores=True)
    if not latest:
        return None
    return max(0.0, time.time() - float(latest[0][1]))


# --- the worker side: asyncio -------------------------------------------------------------


class PushQueue(RedisQueue):
    """saq's Redis queue with the timing and sweeping a push queue needs.

    `schedule` takes its lock in milliseconds (saq's SETEX counts whole seconds), so a job due
    after the grace delay is queued within ~0.1 s instead of up to 2 s. `sweep` re-queues only
    the jobs of dead workers (see there).
    """

    _suspects: set[bytes] = set()

    async def schedule(self, lock: float = 1) -> list[str]:
        script = getattr(self, "_push_schedule_script", None)
        if script is None:
            script = self._push_schedule_script = self.redis.register_script(
                """
                if redis.call('SET', KEYS[1], 1, 'PX', ARGV[1], 'NX') then
                    local jobs = redis.call('ZRANGEBYSCORE', KEYS[2], 1, ARGV[2])
                    for _, v in ipairs(jobs) do
                        redis.call('ZADD', KEYS[2], 0, v)
                        redis.call('RPUSH', KEYS[3], v)
                    end
                    return jobs
                end
                """
            )
        due = await script(
            keys=[self._schedule, self._incomplete, self._queued],
            args=[max(1, int(lock * 1000)), time.time()],
        )
        return [job_id.decode() for job_id in due or []]

    async def dequeue(
        self,
        timeout: float = 0.0,  # noqa: ASYNC109 - saq's signature
        poll_interval: float = 0.0,
    ) -> Any:
        # saq's job slots retry a failed dequeue at once: while Redis is down, every slot
        # would spin. Each waits a second instead.
        try:
            return await super().dequeue(timeout, poll_interval)
        except (RedisError, OSError) as error:
            now = time.monotonic()
            if now - self._last_dequeue_warning > 10:
                self._last_dequeue_warning = now
                logger.warning("push queue unreachable (%s); retrying every second", error)
            await asyncio.sleep(1.0)
            return None

    _last_dequeue_warning = 0.0

    async def notify(self, job: Any) -> None:
        """Nothing: saq PUBLISHes every status change (started, finished) for callers that
        wait on a job (`Job.refresh(until_complete=...)`, `Queue.apply`). Nobody waits on a push
        job, and with one job per message those two round trips were a fifth of the worker's
        Redis traffic per push. The job's stored status is written all the same."""

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        """Put back the jobs of dead workers; leave live ones alone.

        saq's own sweep also takes any job in the active list whose status is not yet
        "active": a job a live worker has just moved there and not yet marked (a window of
        two round trips), which it then aborts mid-push. Here such a job is swept only if a
        sweep a whole interval earlier saw it so too. And a job whose heartbeat stopped is
        re-queued at once rather than asked to abort first: its worker is gone, nobody would
        answer, and saq waits `abort` seconds per job for that answer.
        """
        if not await self.redis.set(self._sweep, 1, ex=max(1, int(lock)), nx=True):
            return []
        suspects: set[bytes] = set()
        swept: list[str] = []
        active: list[Any] = await self.redis.lrange(self._active, 0, -1)
        for job_id in active:
            job = await self._get_job_by_id(job_id)
            if job is None:
                pipe: Any = self.redis.pipeline(transaction=True)
                await pipe.lrem(self._active, 0, job_id).zrem(self._incomplete, job_id).execute()
            elif job.status == Status.ACTIVE and not job.stuck:
                continue
            elif job.status != Status.ACTIVE and job_id not in self._suspects:
                suspects.add(job_id)
                continue
            elif job.retryable:
                await self.retry(job, error=self.swept_error_message)
            else:
                await self.finish(job, Status.ABORTED, error=self.swept_error_message)
            swept.append(job_id.decode())
        self._suspects = suspects
        if swept:
            logger.warning("push queue: re-queued %d jobs of stopped workers", len(swept))
        return swept

    async def enqueue_push(
        self, function: str, *, key: str, at: float = 0.0, **kwargs: Any
    ) -> bool:
        """Queue a job unless one with this key is unfinished; `at` is an epoch time."""
        job = await self.enqueue(
            function,
            key=key,
            scheduled=at if at > time.time() else 0,
            timeout=0,  # no job-wide timeout: each push has its own, and heartbeats find the dead
            heartbeat=_job_heartbeat(),
            retries=10,  # re-runs after a crash or a bug; deliveries have their own attempts
            retry_delay=1.0,
            retry_backoff=60.0,
            ttl=60,
            **kwargs,
        )
        return job is not None

    async def beat(self, worker_id: str) -> None:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(heartbeat_key(), {worker_id: now})
        pipe.zremrangebyscore(heartbeat_key(), 0, now - _HEARTBEAT_KEEP_SECONDS)
        await pipe.execute()


def _job_heartbeat() -> int:
    from notifications.app_settings import app_settings

    return app_settings.JOB_HEARTBEAT_SECONDS


def push_queue(concurrency: int = 10) -> PushQueue:
    # saq keeps one connection blocked in BLMOVE per job slot; the rest is for the jobs' own
    # calls, the scheduler, the sweeper and the heartbeat.
    redis = AsyncRedis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=2,
        socket_timeout=None,
        max_connections=concurrency * 2 + 20,
    )
    return PushQueue(redis, name=queue_name(), max_concurrent_ops=50)
