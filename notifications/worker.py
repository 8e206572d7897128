"""The push worker: the outbox relay and a saq worker in one process.

Runs beside the web processes (`manage.py run_push_worker`), so a push service that takes
half a second, or is down, costs the badge path nothing. Backends are made once in the
worker's event loop and closed when it stops. On SIGTERM the relay stops, the queue stops
taking jobs, and the pushes in flight get up to PUSH_TIMEOUT_SECONDS (+5 s) to finish; a job
cut short is retried by saq, and its deliveries already claimed are not sent twice.

Any number of workers may run (one per process, or several hosts): saq hands each job to
one of them, a dead one's jobs are swept back to the queue once its heartbeats stop, and the
delivery rows keep any job that runs twice from pushing twice.
"""

import asyncio
import logging
import time
from typing import cast

from redis.exceptions import RedisError
from saq import Worker
from saq.types import PartialTimersDict

from notifications import jobs, metrics, queue
from notifications.app_settings import app_settings
from notifications.backends import DeviceBackends
from notifications.relay import OutboxRelay

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
# Jobs run at once, whatever the pushes in flight: a message job sends many pushes, and saq
# keeps a Redis connection blocked per job slot.
MAX_JOB_SLOTS = 200


class PushWorker:
    def __init__(
        self,
        *,
        backends: DeviceBackends | None = None,
        concurrency: int | None = None,
        report_every_seconds: float = 30.0,
    ) -> None:
        self.backends = backends
        self.concurrency = concurrency or app_settings.WORKER_CONCURRENCY
        self.report_every_seconds = report_every_seconds
        self.sender: jobs.Sender | None = None
        self.relay: OutboxRelay | None = None

    @property
    def sent(self) -> int:
        return self.sender.sent if self.sender else 0

    @property
    def failed(self) -> int:
        return self.sender.failed if self.sender else 0

    async def run(self, stop: asyncio.Event) -> None:
        job_slots = min(self.concurrency, MAX_JOB_SLOTS)
        push_queue = queue.push_queue(job_slots)
        await push_queue.connect()
        backends = self.backends or DeviceBackends()
        self.sender = jobs.Sender(backends, push_queue, self.concurrency)
        self.relay = OutboxRelay(push_queue)
        saq_worker = Worker(
            push_queue,
            functions=jobs.FUNCTIONS,
            concurrency=job_slots,
            dequeue_timeout=1.0,  # a stopping worker notices within a second
            shutdown_grace_period_s=int(app_settings.PUSH_TIMEOUT_SECONDS) + 5,
            timers=cast(
                PartialTimersDict,
                {
                    "schedule": 0.1,  # PushQueue.schedule takes fractions of a second
                    "sweep": app_settings.SWEEP_SECONDS,
                    "worker_info": 10,
                    "abort": 1,
                },
            ),
        )
        saq_worker.SIGNALS = []  # the command owns SIGTERM and SIGINT
        saq_worker.context["sender"] = self.sender
        logger.info("push worker %s started (%d pushes at once)", saq_worker.id, self.concurrency)
        tasks = [
            asyncio.create_task(saq_worker.start(), name="saq"),
            asyncio.create_task(self.relay.run(stop), name="relay"),
            asyncio.create_task(self._beat(push_queue, saq_worker.id, stop), name="heartbeat"),
        ]
        try:
            await stop.wait()
        finally:
            stop.set()
            # saq's upkeep loops sleep up to a sweep interval between rounds; its stop() would
            # wait out the whole grace period for them. Only the job tasks deserve the wait.
            for task in list(saq_worker.tasks):
                if task.get_name() != "process":
                    task.cancel()
            await saq_worker.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await backends.aclose()
            try:
                await push_queue.disconnect()
            except (RedisError, OSError):
                pass
            logger.info(
                "push worker stopped: %d relayed, %d sent, %d failed",
                self.relay.relayed,
                self.sent,
                self.failed,
            )

    async def _beat(self, push_queue: queue.PushQueue, worker_id: str, stop: asyncio.Event) -> None:
        next_report = time.monotonic() + self.report_every_seconds
        while not stop.is_set():
            try:
                await push_queue.beat(worker_id)
                metrics.PUSH_QUEUE_DEPTH.set(await push_queue.count("incomplete"))
            except (RedisError, OSError):
                logger.warning("push worker heartbeat: Redis unreachable")
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + self.report_every_seconds
                logger.info("push worker: %d sent, %d failed", self.sent, self.failed)
            try:
                await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                pass
