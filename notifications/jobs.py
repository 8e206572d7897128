"""The queue's jobs: decide in the database (notifications.delivery), then push.

A message job is a batch of messages (the relay makes one per batch of outbox rows): it plans
all their deliveries at once, then claims and sends them in batches as send slots free up, and
records the answers in batches shared with the other jobs running. Each job is short: the grace
delay and retry delays are the queue's schedule, not sleeps. A retry is a job for one delivery
(`push_retry`), so a device already served is never sent to again when another device of the
same message needs a second try.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
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


# At most this many deliveries per claim (one UPDATE ... RETURNING): a statement of bounded size.
CLAIM_BATCH = 500


class Slots:
    """The pushes a worker may have in flight: taken many at once, given back one by one.

    A job waits until a fair batch of slots is free (an eighth of them, or all it still needs)
    before claiming: taking each slot as it frees up would claim one row per UPDATE again.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._freed = asyncio.Event()

    async def take(self, wanted: int) -> int:
        enough = min(wanted, max(1, self.size // 8))
        while self.free < enough:
            self._freed.clear()
            await self._freed.wait()
        taken = min(wanted, self.free, CLAIM_BATCH)
        self.free -= taken
        return taken

    def give(self, count: int = 1) -> None:
        if count:
            self.free += count
            self._freed.set()


class Sender:
    """Sends pushes through the worker's backends: claims them in batches when send slots are
    free, and records their answers in batches."""

    def __init__(
        self, backends: DeviceBackends, push_queue: queue.PushQueue, concurrency: int
    ) -> None:
        self.backends = backends
        self.queue = push_queue
        self.slots = Slots(concurrency)
        self.settle: Batcher[tuple[delivery.ReadyPush, PushOutcome], delivery.Settled] = Batcher(
            delivery.deliveries_settle, max_size=1000
        )
        self._claim = in_db(delivery.deliveries_claim)
        self._request_seconds: dict[str, Any] = {}
        self.sent = 0
        self.failed = 0

    async def send_all(self, pushes: list[delivery.ReadyPush]) -> int:
        """Send what this run can claim of `pushes`; how many it claimed."""
        sending: list[asyncio.Task[None]] = []
        rest = pushes
        timeout = app_settings.PUSH_TIMEOUT_SECONDS  # a settings lookup: once, not per push
        try:
            while rest:
                # Claimed only once slots are free: a worker killed mid-job leaves the rest
                # pending for the re-run of its job, not claimed and never sent.
                count = await self.slots.take(len(rest))
                batch, rest = rest[:count], rest[count:]
                try:
                    attempts = await self._claim(batch)
                except BaseException:
                    self.slots.give(count)
                    raise
                claimed = 0
                for push in batch:
                    attempt = attempts.pop(push.delivery_id, None)
                    if attempt is None:
                        continue  # another run of this job has it (or a duplicate of the list)
                    claimed += 1
                    sending.append(asyncio.create_task(self._send(push, attempt, timeout)))
                self.slots.give(count - claimed)
        finally:
            if sending:
                await asyncio.gather(*sending)
        return len(sending)

    async def _send(self, push: delivery.ReadyPush, attempt: int, limit: float) -> None:
        push = delivery.ReadyPush(  # the same push, now claimed
            push.delivery_id, push.target, push.message, push.message_created_at, attempt
        )
        try:
            outcome = await self._outcome(push, limit)
        finally:
            self.slots.give()
        settled = await self.settle((push, outcome))
        if settled.status == delivery.Status.SENT:
            self.sent += 1
            return
        if settled.status == delivery.Status.FAILED:
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

    async def _outcome(self, push: delivery.ReadyPush, limit: float) -> PushOutcome:
        kind = push.target.kind
        started = time.perf_counter()
        try:
            backend = self.backends.for_kind(kind)
            # asyncio.timeout, not wait_for: no extra task per push.
            async with asyncio.timeout(limit):
                return await backend.send(push.target, push.message)
        except TimeoutError:
            return PushOutcome("retry", error="no answer within the push timeout")
        except Exception as error:  # a backend bug: keep the worker alive, try again later
            logger.exception("push backend for %s raised", kind)
            return PushOutcome("retry", error=f"{type(error).__name__}: {error}")
        finally:
            histogram = self._request_seconds.get(kind)
            if histogram is None:
                histogram = self._request_seconds[kind] = metrics.PUSH_REQUEST_SECONDS.labels(kind)
            histogram.observe(time.perf_counter() - started)


async def push_messages(ctx: dict[str, Any], *, message_ids: list[int]) -> int:
    pushes = await in_db(delivery.message_pushes)(message_ids)
    sender: Sender = ctx["sender"]
    return await sender.send_all(pushes)


async def push_message(ctx: dict[str, Any], *, message_id: int) -> int:
    """A job of one message, as relays before batching queued them."""
    return await push_messages(ctx, message_ids=[message_id])


async def push_badge(ctx: dict[str, Any], *, user_id: int) -> int:
    # The job's enqueue time names this badge update: a re-run of the same job sends nothing
    # twice, a later read makes a new job with a new time.
    seq = int(ctx["job"].queued)
    pushes = await in_db(delivery.badge_pushes)(user_id, seq)
    sender: Sender = ctx["sender"]
    return await sender.send_all(pushes)


async def push_retry(ctx: dict[str, Any], *, delivery_id: int) -> int:
    pushes = await in_db(delivery.retry_pushes)(delivery_id)
    sender: Sender = ctx["sender"]
    return await sender.send_all(pushes)


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
    (queue.MESSAGES_JOB, with_heartbeat(push_messages)),
    (queue.MESSAGE_JOB, with_heartbeat(push_message)),
    (queue.BADGE_JOB, with_heartbeat(push_badge)),
    (queue.RETRY_JOB, with_heartbeat(push_retry)),
]
