"""The relay: moves push intents from where they are durable to the queue.

Runs in each push worker. Message intents are `PushOutbox` rows, committed with their messages
(or written after an edit that added mentions: notifications.delivery, "Edits"); the relay
queues one job per batch of them (up to MESSAGES_PER_JOB rows written within BATCH_SPAN_SECONDS
of each other; job key `messages:<first id>:<count>:<digest of the ids and the newest time>`,
due at the newest row's time plus the grace delay, so none is pushed before its grace delay and
none waits more than the span beyond it) and deletes the rows. It runs when nudged (a message
committed) and at least every RELAY_POLL_SECONDS, so a message saved while Redis was
unreachable gets its pushes once Redis is back. If the relay dies between queueing and
deleting, the next pass queues the same batches again: saq refuses a key that is still
unfinished, and a job that runs again finds its deliveries claimed. Several workers may relay
at once for the same reasons.

Badge intents are users in a Redis sorted set (notifications.queue.badge_request): each becomes
a job `badge:<user>` due BADGE_COALESCE_SECONDS after the first read, so a burst of reads
sends one badge update. A user whose badge job is already running stays in the set for the
next pass: that job may have read the count before this read.
"""

import asyncio
import logging
import time
from typing import Any

from django.db import DatabaseError
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from saq.job import Status

from notifications import queue, upkeep
from notifications.app_settings import app_settings
from notifications.jobs import in_db
from notifications.models import PushOutbox

logger = logging.getLogger(__name__)

BATCH = 500
MESSAGES_PER_JOB = 100
BATCH_SPAN_SECONDS = 0.2
UPKEEP_EVERY_SECONDS = 30.0


def outbox_batch() -> list[tuple[int, float]]:
    rows = PushOutbox.objects.order_by("created_at").values_list("message_id", "created_at")
    return [(message_id, created.timestamp()) for message_id, created in rows[:BATCH]]


def outbox_delete(message_ids: list[int]) -> None:
    PushOutbox.objects.filter(message_id__in=message_ids).delete()


def job_batches(rows: list[tuple[int, float]]) -> list[tuple[list[int], float]]:
    """Outbox rows (message id, creation time, oldest first) cut into jobs: (message ids, the
    newest creation time)."""
    batches: list[tuple[list[int], float]] = []
    ids: list[int] = []
    first = newest = 0.0
    for message_id, created in rows:
        if ids and (len(ids) >= MESSAGES_PER_JOB or created - first > BATCH_SPAN_SECONDS):
            batches.append((ids, newest))
            ids = []
        if not ids:
            first = created
        ids.append(message_id)
        newest = max(newest, created) if len(ids) > 1 else created
    if ids:
        batches.append((ids, newest))
    return batches


class OutboxRelay:
    def __init__(self, push_queue: queue.PushQueue) -> None:
        self.queue = push_queue
        self.relayed = 0
        self._next_upkeep = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        from django.conf import settings

        redis = AsyncRedis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        subscribed = False
        try:
            while not stop.is_set():
                try:
                    if not subscribed:
                        await pubsub.subscribe(queue.nudge_channel())
                        subscribed = True
                    await self.relay_once()
                    await self._wait_for_nudge(pubsub, stop)
                except (RedisError, OSError, DatabaseError) as error:
                    logger.warning("push relay: %s; trying again in 1 s", error)
                    subscribed = False
                    await _sleep_unless(stop, 1.0)
        finally:
            try:
                await pubsub.aclose()
                await redis.aclose()
            except (RedisError, OSError):
                pass

    async def relay_once(self) -> None:
        while True:
            rows = await in_db(outbox_batch)()
            if rows:
                grace = app_settings.GRACE_SECONDS
                # Concurrently: saq bounds its own operations in flight.
                await asyncio.gather(
                    *(
                        self.queue.enqueue_push(
                            queue.MESSAGES_JOB,
                            key=queue.messages_job_key(message_ids, newest),
                            at=newest + grace,
                            message_ids=message_ids,
                        )
                        for message_ids, newest in job_batches(rows)
                    )
                )
                await in_db(outbox_delete)([m for m, _ in rows])
                self.relayed += len(rows)
            if len(rows) < BATCH:
                break
        await self._relay_badges()
        if time.monotonic() >= self._next_upkeep:
            self._next_upkeep = time.monotonic() + UPKEEP_EVERY_SECONDS
            await self._upkeep()

    async def _relay_badges(self) -> None:
        key = queue.badge_pending_key()
        pending: Any = await self.queue.redis.zrange(key, 0, BATCH - 1, withscores=True)
        done = []
        for raw_user, first_read in pending:
            user_id = int(raw_user)
            queued = await self.queue.enqueue_push(
                queue.BADGE_JOB,
                key=queue.badge_job_key(user_id),
                at=first_read + app_settings.BADGE_COALESCE_SECONDS,
                user_id=user_id,
            )
            if not queued:
                job = await self.queue.job(queue.badge_job_key(user_id))
                if job is not None and job.status == Status.ACTIVE:
                    continue  # already reading the count: this read needs a job of its own
            done.append(raw_user)
        if done:
            await self.queue.redis.zrem(key, *done)

    async def _upkeep(self) -> None:
        overdue, stale = await in_db(upkeep.deliveries_upkeep)()
        for delivery_id, attempt in overdue:
            await self.queue.enqueue_push(
                queue.RETRY_JOB,
                key=queue.retry_job_key(delivery_id, attempt),
                delivery_id=delivery_id,
            )
        if overdue or stale:
            logger.warning(
                "push upkeep: re-queued %d retries, marked %d stale claims failed",
                len(overdue),
                stale,
            )

    async def _wait_for_nudge(self, pubsub: object, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + app_settings.RELAY_POLL_SECONDS
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            message = await pubsub.get_message(timeout=min(remaining, 0.5))  # type: ignore[attr-defined]
            if message is not None:
                return


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
