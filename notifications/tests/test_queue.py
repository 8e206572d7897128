"""The queue's sweep: jobs of dead workers go back to the queue; live workers' jobs stay."""

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from saq.job import Status

from notifications import queue


@pytest.fixture
async def push_queue() -> AsyncIterator[queue.PushQueue]:
    push_queue = queue.push_queue()
    yield push_queue
    await push_queue.disconnect()


async def _take(push_queue: queue.PushQueue, key: str, **update: object) -> None:
    """A worker takes the job (it moves to the active list), and maybe marks it."""
    assert await push_queue.enqueue_push(queue.RETRY_JOB, key=key, delivery_id=1)
    job = await push_queue.dequeue(timeout=1)
    assert job is not None and job.key == key
    if update:
        await job.update(**update)


async def _back_in_the_queue(push_queue: queue.PushQueue, key: str) -> None:
    # Retried after its job retry delay: waiting in the schedule, no longer active.
    assert await push_queue.count("active") == 0
    job = await push_queue.job(key)
    assert job is not None and job.status == Status.QUEUED
    assert await push_queue.redis.zscore(push_queue._incomplete, job.id) is not None


async def _sweep(push_queue: queue.PushQueue) -> list[str]:
    await push_queue.redis.delete(push_queue._sweep)  # the lock: sweep now
    return await push_queue.sweep(lock=1)


async def test_a_job_just_taken_by_a_live_worker_is_not_swept(push_queue: Any) -> None:
    await _take(push_queue, "just-taken")  # not yet marked active: saq's window
    assert await _sweep(push_queue) == []
    assert await push_queue.count("active") == 1
    # Still not marked a whole sweep later: its worker died in that window.
    assert await _sweep(push_queue) == [push_queue.job_id("just-taken")]
    await _back_in_the_queue(push_queue, "just-taken")


async def test_a_job_whose_heartbeat_stopped_is_requeued_at_once(push_queue: Any) -> None:
    await _take(push_queue, "beating", status=Status.ACTIVE)
    assert await _sweep(push_queue) == []  # heartbeat fresh
    job = await push_queue.job("beating")
    assert job is not None
    job.touched = int((time.time() - 3600) * 1000)  # silent for an hour
    await push_queue.redis.set(job.id, push_queue.serialize(job))
    started = time.monotonic()
    assert await _sweep(push_queue) == [job.id]
    assert time.monotonic() - started < 2  # no waiting for a dead worker to answer an abort
    await _back_in_the_queue(push_queue, "beating")


async def test_a_slot_waits_a_second_when_redis_is_unreachable() -> None:
    from redis.asyncio import Redis as AsyncRedis

    unreachable = queue.PushQueue(
        AsyncRedis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1), name="nowhere"
    )
    started = time.monotonic()
    assert await unreachable.dequeue(timeout=1) is None  # no exception for saq to spin on
    assert time.monotonic() - started >= 1.0
    await unreachable.redis.aclose()
