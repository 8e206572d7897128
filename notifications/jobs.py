"""The queue's jobs: decide in the database (notifications.delivery), then push.

Each job is short: the grace delay and retry delays are the queue's schedule, not sleeps. A
retry is a job for one delivery (`push_retry`), so a device already served is never sent to
again when another device of the same message needs a second try.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Generic, TypeVar

from channels.db import DatabaseSyncToAsync
from redis.exceptions import RedisError

from notifications import delivery, metrics, queue
from notifications.app_settings import app_settings
from notifications.backends import DeviceBackends, PushOutcome

T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")

logger = logging.getLogger(__name__)

# The jobs' ORM work runs on a pool of its own, not on the one thread that
# `database_sync_to_async` shares: one thread made the database the bottleneck (24 pushes/s).
_DB_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="push-db")


def in_db(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`function` run on the push worker's database threads, old connections closed around it."""
    return DatabaseSyncToAsync(function, thread_sensitive=False, executor=_DB_THREADS)


class Batcher(Generic[K, R]):
    """Runs a batch function over the keys that many jobs ask for at about the same time.

    While one batch is in the database, the jobs that ask meanwhile wait for the next: under
    load the batches grow and the queries per push shrink; alone, a job waits for no one.
    """

    def __init__(self, batch: Callable[[list[K]], list[R]], max_size: int = 200) -> None:
        self.batch = in_db(batch)
        self.max_size = max_size
        self.waiting: list[tuple[K, asyncio.Future[R]]] = []
        self.draining: asyncio.Task[None] | None = None

    async def __call__(self, key: K) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.waiting.append((key, future))
        if self.draining is None:
            self.draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.waiting:
                await asyncio.sleep(0)  # let the jobs woken with this one join in
                taken, self.waiting = (
                    self.waiting[: self.max_size],
                    self.waiting[self.max_size :],
                )
                try:
                    results = await self.batch([key for key, _ in taken])
                except Exception as error:
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(taken, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self.draining = None


def _plan_messages(message_ids: list[int]) -> list[list[delivery.ReadyPush]]:
    by_message = delivery.message_deliveries(message_ids)
    return [by_message.pop(message_id, []) for message_id in message_ids]


class Sender:
    """Sends claimed pushes through the worker's backends, a bounded number at once."""

    def __init__(
        self, backends: DeviceBackends, push_queue: queue.PushQueue, concurrency: int
    ) -> None:
        self.backends = backends
        self.queue = push_queue
        self.slots = asyncio.Semaphore(concurrency)
        self.plan_message: Batcher[int, list[delivery.ReadyPush]] = Batcher(_plan_messages)
        self.claim: Batcher[delivery.ReadyPush, int | None] = Batcher(delivery.deliveries_claim)
        self.settle: Batcher[tuple[delivery.ReadyPush, PushOutcome], delivery.Settled] = Batcher(
            delivery.deliveries_settle
        )
        self.sent = 0
        self.failed = 0

    async def send_all(self, pushes: list[delivery.ReadyPush]) -> None:
        await asyncio.gather(*(self._send(push) for push in pushes))

    async def _send(self, push: delivery.ReadyPush) -> None:
        # Claimed only once a slot is free: a worker killed mid-batch leaves the rest pending
        # for the re-run of its job, not claimed and never sent.
        async with self.slots:
            attempt = await self.claim(push)
            if attempt is None:
                return  # another run of this job has it
            push = replace(push, attempt=attempt)
            outcome = await self._outcome(push)
        settled = await self.settle((push, outcome))
        if settled.status == delivery.Status.SENT:
            self.sent += 1
        elif settled.status == delivery.Status.FAILED:
            self.failed += 1
            logger.warning("push %s failed: %s", push.delivery_id, outcome.error)
        if settled.retry_at is not None:
            try:
                await self.queue.enqueue_push(
                    queue.RETRY_JOB,
                    key=queue.retry_job_key(push.delivery_id, settled.attempt),
                    at=settled.retry_at,
                    delivery_id=push.delivery_id,
                )
            except RedisError:
                logger.warning("could not queue retry of push %s; upkeep will", push.delivery_id)

    async def _outcome(self, push: delivery.ReadyPush) -> PushOutcome:
        kind = push.target.kind
        started = time.perf_counter()
        try:
            backend = self.backends.for_kind(kind)
            return await asyncio.wait_for(
                backend.send(push.target, push.message), app_settings.PUSH_TIMEOUT_SECONDS
            )
        except TimeoutError:
            return PushOutcome("retry", error="no answer within the push timeout")
        except Exception as error:  # a backend bug: keep the worker alive, try again later
            logger.exception("push backend for %s raised", kind)
            return PushOutcome("retry", error=f"{type(error).__name__}: {error}")
        finally:
            metrics.PUSH_REQUEST_SECONDS.labels(kind).observe(time.perf_counter() - started)


async def push_message(ctx: dict[str, Any], *, message_id: int) -> int:
    sender: Sender = ctx["sender"]
    pushes = await sender.plan_message(message_id)
    await sender.send_all(pushes)
    return len(pushes)


async def push_badge(ctx: dict[str, Any], *, user_id: int) -> int:
    # The job's enqueue time names this badge update: a re-run of the same job sends nothing
    # twice, a later read makes a new job with a new time.
    seq = int(ctx["job"].queued)
    pushes = await in_db(delivery.badge_deliveries)(user_id, seq)
    await ctx["sender"].send_all(pushes)
    return len(pushes)


async def push_retry(ctx: dict[str, Any], *, delivery_id: int) -> int:
    pushes = await in_db(delivery.retry_deliveries)(delivery_id)
    await ctx["sender"].send_all(pushes)
    return len(pushes)


def with_heartbeat(function: Any) -> Any:
    """Touch the job while it runs, so only a job whose worker died looks stuck to the sweeper."""

    async def run(ctx: dict[str, Any], **kwargs: Any) -> Any:
        job = ctx["job"]
        beat = asyncio.create_task(_beat(job))
        try:
            return await function(ctx, **kwargs)
        finally:
            beat.cancel()

    run.__qualname__ = function.__qualname__
    return run


async def _beat(job: Any) -> None:
    interval = max(0.5, job.heartbeat / 3) if job.heartbeat else 10.0
    while True:
        await asyncio.sleep(interval)
        try:
            await job.update()
        except RedisError:
            logger.warning("could not touch job %s", job.key)


FUNCTIONS = [
    (queue.MESSAGE_JOB, with_heartbeat(push_message)),
    (queue.BADGE_JOB, with_heartbeat(push_badge)),
    (queue.RETRY_JOB, with_heartbeat(push_retry)),
]
