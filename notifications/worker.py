"""The push worker: takes jobs off the queue and hands them to the push backend.

Runs beside the web processes (`manage.py run_push_worker`), so a push service that takes
half a second, or is down, costs the badge path nothing. Jobs in flight are bounded; SIGTERM
stops taking jobs and lets the ones in flight finish.
"""

import asyncio
import json
import logging
import time

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from chatproject.metrics import PUSH_DELIVERIES, PUSH_DURATION
from chatproject.redis_client import async_redis_connection
from notifications import queue
from notifications.app_settings import app_settings
from notifications.backends import PushBackend, push_backend

logger = logging.getLogger(__name__)


class PushWorker:
    def __init__(
        self,
        *,
        name: str = "default",
        backend: PushBackend | None = None,
        concurrency: int | None = None,
        poll_seconds: float = 1.0,
        report_every_seconds: float = 30.0,
    ) -> None:
        self.name = name
        self.backend = backend or push_backend()
        self.concurrency = concurrency or app_settings.WORKER_CONCURRENCY
        self.poll_seconds = poll_seconds
        self.report_every_seconds = report_every_seconds
        self.sent = 0
        self.failed = 0

    async def run(self, stop: asyncio.Event) -> None:
        redis = async_redis_connection()
        recovered = await queue.push_recover(redis, self.name)
        if recovered:
            logger.warning("push worker %s requeued %d unfinished jobs", self.name, recovered)
        logger.info("push worker %s started (%d jobs at once)", self.name, self.concurrency)
        slots = asyncio.Semaphore(self.concurrency)
        in_flight: set[asyncio.Task[None]] = set()
        next_report = time.monotonic() + self.report_every_seconds
        try:
            while not stop.is_set():
                await slots.acquire()
                try:
                    raw = await queue.push_take(redis, self.name, self.poll_seconds)
                except RedisError:
                    slots.release()
                    logger.warning("push queue unreachable; retrying in 1 s")
                    await asyncio.sleep(1)
                    continue
                if raw is None:
                    slots.release()
                else:
                    task = asyncio.create_task(self._handle(redis, raw, slots))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + self.report_every_seconds
                    logger.info(
                        "push worker %s: %d sent, %d failed, %d in flight",
                        self.name,
                        self.sent,
                        self.failed,
                        len(in_flight),
                    )
        finally:
            if in_flight:
                logger.info("push worker %s finishing %d jobs", self.name, len(in_flight))
                await asyncio.gather(*in_flight, return_exceptions=True)
            await redis.aclose()
            logger.info(
                "push worker %s stopped: %d sent, %d failed", self.name, self.sent, self.failed
            )

    async def _handle(self, redis: AsyncRedis, raw: str, slots: asyncio.Semaphore) -> None:
        started = time.perf_counter()
        try:
            job = json.loads(raw)
            await asyncio.wait_for(self.backend.send(job), app_settings.PUSH_TIMEOUT_SECONDS)
        except Exception:
            self.failed += 1
            PUSH_DELIVERIES.labels("failed").inc()
            logger.exception("push failed; job kept in the dead-letter list: %s", raw[:500])
            await self._settle(queue.push_dead(redis, self.name, raw))
        else:
            self.sent += 1
            PUSH_DELIVERIES.labels("sent").inc()
            await self._settle(queue.push_done(redis, self.name, raw))
        finally:
            PUSH_DURATION.observe(time.perf_counter() - started)
            slots.release()

    async def _settle(self, step: "asyncio.Future[None] | object") -> None:
        try:
            await step  # type: ignore[misc]
        except RedisError:
            # The job stays in the processing list and is requeued on the next start.
            logger.warning("could not settle a push job in Redis; it will be retried")
