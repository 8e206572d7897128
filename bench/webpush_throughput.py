"""Pushes per second through one WebPushBackend against a slow Web Push service.

    .venv/bin/python -m bench.webpush_throughput --concurrency 200 500 --delay 0.5

Starts the local Web Push double (notifications/tests/doubles/webpush.py) in its own process,
so its JWT checks and decryption never share a CPU budget with the sender, with `--delay`
seconds per request. Then, for each concurrency N, keeps N sends in flight through one backend
(one event loop, one aiohttp session: what one push worker has) and prints pushes/s, the
latency of a send (p50/p99) and the sender's CPU time per push. With a 0.5 s service, N in
flight can at best reach 2N pushes/s; the CPU per push says where one core would stop (the
"1-core ceiling": pushes/s if the sender had a whole core to itself). The load average and the
sender's CPU share (its CPU time over the wall time) are printed too: on a shared machine the
sender gets only its share of a core, and pushes/s = share / CPU per push.
Numbers only, no assertions: the machine's load moves them.
"""

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import aiohttp
import django
import psutil

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
# The settings name a Redis; this script never connects to it, so do not start an embedded one.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
django.setup()

from django.conf import settings  # noqa: E402

from bench.push_throughput import start_webpush_double  # noqa: E402
from notifications.backends import PushMessage, PushOutcome, PushTarget  # noqa: E402
from notifications.vapid import vapid_key_pair_generate  # noqa: E402
from notifications.webpush import WebPushBackend  # noqa: E402

PRIVATE_KEY, PUBLIC_KEY = vapid_key_pair_generate()
settings.WEBPUSH_VAPID_PRIVATE_KEY = PRIVATE_KEY


async def subscriptions(origin: str, count: int) -> list[PushTarget]:
    async with aiohttp.ClientSession() as session:
        targets = []
        for device_id in range(count):
            async with session.post(f"{origin}/_subscribe") as response:
                subscription = await response.json()
            targets.append(
                PushTarget(device_id, "webpush", subscription["endpoint"], subscription["keys"])
            )
        return targets


async def stats(origin: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{origin}/_stats") as response:
        result: dict[str, Any] = await response.json()
        return result


async def run_once(
    backend: WebPushBackend, targets: list[PushTarget], concurrency: int, pushes: int
) -> tuple[float, list[float], list[PushOutcome]]:
    """(wall seconds, latencies, outcomes) of `pushes` sends with `concurrency` in flight."""
    latencies: list[float] = []
    outcomes: list[PushOutcome] = []
    next_push = 0

    async def sender() -> None:
        nonlocal next_push
        while next_push < pushes:
            number = next_push
            next_push += 1
            message = PushMessage(
                payload={
                    "type": "chat-message",
                    "roomId": 1,
                    "messageId": number,
                    "title": "bench",
                    "body": "a message of an ordinary length, about sixty characters long",
                    "badge": number % 100,
                }
            )
            started = time.perf_counter()
            outcomes.append(await backend.send(targets[number % len(targets)], message))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, outcomes


async def main(args: argparse.Namespace) -> None:
    process, origin = start_webpush_double(args.delay, PUBLIC_KEY)
    service = psutil.Process(process.pid)
    try:
        targets = await subscriptions(origin, args.devices)
        print(f"Web Push double at {origin}, {args.delay} s per request, {len(targets)} devices")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(
            f"{'in flight':>9} {'pushes':>7} {'pushes/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'CPU us/push':>11} {'CPU share':>9} {'1-core ceiling/s':>16} "
            f"{'double CPU us/push':>18}  outcomes"
        )
        for concurrency in args.concurrency:
            backend = WebPushBackend()
            try:
                pushes = args.pushes or concurrency * 8
                # Warm-up: opens the connections and signs the VAPID token, as a running
                # worker already has.
                await run_once(backend, targets, concurrency, concurrency)
                cpu_before = time.process_time()
                double_before = sum(service.cpu_times()[:2])
                wall, latencies, outcomes = await run_once(backend, targets, concurrency, pushes)
                cpu = time.process_time() - cpu_before
                double_cpu = sum(service.cpu_times()[:2]) - double_before
            finally:
                await backend.aclose()
            quantiles = statistics.quantiles(latencies, n=100)
            counts: dict[str, int] = {}
            for outcome in outcomes:
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
            print(
                f"{concurrency:>9} {pushes:>7} {pushes / wall:>9.0f} {quantiles[49] * 1e3:>8.0f} "
                f"{quantiles[98] * 1e3:>8.0f} {cpu / pushes * 1e6:>11.0f} {cpu / wall:>9.0%} "
                f"{pushes / cpu:>16.0f} "
                f"{double_cpu / pushes * 1e6:>18.0f}  {counts}"
            )
        seen = await stats(origin)
        print(f"the double received {seen['pushes']} pushes, refused {len(seen['rejections'])}")
    finally:
        process.terminate()
        process.wait(10)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--delay", type=float, default=0.5, help="seconds per push request")
    parser.add_argument("--pushes", type=int, default=0, help="per run (default 8 x in flight)")
    parser.add_argument("--devices", type=int, default=100, help="distinct subscriptions")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
