"""Badge latency with a slow push service beside badge latency with no pushes, in one run.

    .venv/bin/python -m bench.push_isolation --members 20 --rate 10 --duration 20

Runs the stack (bench/stack.py: daphne, the push worker, Redis, a fresh database) twice with
the same load: one room of `--members`, all connected (none viewing the room), one of them
sending `--rate` messages per second for `--duration` seconds. Every message is a badge update
for each other member, and a push to each one's device.

- **pushes on**: the push worker runs with bench.pushes.RecordingDelayedPushBackend, every push
  taking `--push-delay` seconds (0.5 s: a slow push service);
- **pushes off**: the push worker is stopped once the stack is up. The web side does the same
  work as before (outbox row, relay nudge); no relay, queue or push runs beside it.

Badge latency is a member's `total-unread-count-updated` for a message, timed from the moment
the sender wrote the frame (paired through the `chat-room-updated` that carries the message,
as bench/clients.py pairs them). Prints p50/p99/max for both runs and the pushes done. Numbers
only, no assertions: the machine's load moves them; run it more than once.
"""

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import websockets

from bench.stack import RESULTS, Stack


class IsolationStack(Stack):
    """The bench's stack on its own PostgreSQL database (never the shared `bench` one)."""

    def __init__(self, *, postgres_db: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_db = postgres_db

    def _database_url(self) -> str:
        if self.database != "postgres":
            return super()._database_url()
        import psycopg

        admin = "postgresql://postgres@127.0.0.1:5432/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.postgres_db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.postgres_db}"')
        return f"postgresql://postgres@127.0.0.1:5432/{self.postgres_db}"


def run_mode(args: argparse.Namespace, pushes: bool) -> dict[str, Any]:
    name = "pushes-on" if pushes else "pushes-off"
    stack = IsolationStack(
        postgres_db=args.postgres_db,
        database=args.database,
        push_delay=args.push_delay,
        logs=Path(args.results) / name,
    )
    try:
        stack.start()
        users = [f"m{n}" for n in range(args.members)]
        seeded = stack.seed({"users": users, "rooms": [{"name": "room", "members": users}]})
        stack.serve()
        assert stack.worker is not None
        if pushes:
            # Started: its heartbeat (notifications.queue.heartbeat_key) is in Redis. Its
            # start-up CPU must not land on the first messages.
            beat = f"{stack.prefix}:notifications:push:heartbeat"
            deadline = time.monotonic() + 60
            while not stack.redis().zcard(beat) and time.monotonic() < deadline:
                time.sleep(0.2)
        else:
            stack.worker.terminate()
            stack.worker.wait(30)
        worker = psutil.Process(stack.worker.pid) if pushes else None
        daphne = psutil.Process(stack.daphne.pid) if stack.daphne else None
        cpu = {"worker": _cpu(worker), "daphne": _cpu(daphne)}
        started = time.perf_counter()
        latencies, errors = asyncio.run(_load(args, stack.port, seeded))
        elapsed = time.perf_counter() - started
        cpu = {
            "worker": _cpu(worker) - cpu["worker"],
            "daphne": _cpu(daphne) - cpu["daphne"],
        }
        pushed = len(stack.pushed()) if pushes else 0
        return {
            "name": name,
            "latencies": latencies,
            "errors": errors,
            "pushed": pushed,
            "cpu": {key: value / elapsed for key, value in cpu.items()},
        }
    finally:
        stack.stop()
        _clean_redis(stack)


def _cpu(process: psutil.Process | None) -> float:
    return sum(process.cpu_times()[:2]) if process is not None else 0.0


async def _load(
    args: argparse.Namespace, port: int, seeded: dict[str, Any]
) -> tuple[list[float], list[str]]:
    room_id = seeded["rooms"]["room"]
    tokens = [seeded["users"][f"m{n}"][1] for n in range(args.members)]
    latencies: list[float] = []
    errors: list[str] = []
    connections = [
        await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/chat/?token={token}", compression=None, ping_interval=None
        )
        for token in tokens
    ]
    count = int(args.rate * args.duration)
    expected = count * (args.members - 1)
    all_measured = asyncio.Event()

    def measured(latency: float) -> None:
        latencies.append(latency)
        if len(latencies) >= expected:
            all_measured.set()

    readers = [asyncio.create_task(_read(ws, room_id, measured, errors)) for ws in connections[1:]]
    await asyncio.sleep(2)  # every snapshot read, every listener registered
    sender = connections[0]
    begin = time.perf_counter()
    for n in range(count):
        # Open loop: each message at its time, whatever the previous ones are doing.
        delay = begin + n / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = {
            "type": "send-message",
            "roomId": room_id,
            "message": f"bench {time.perf_counter_ns()}",
            "clientMessageId": f"iso-{n}-{uuid.uuid4().hex[:6]}",
        }
        await sender.send(json.dumps(frame))
    try:
        await asyncio.wait_for(all_measured.wait(), 30)
    except TimeoutError:
        errors.append(f"{expected - len(latencies)} badge updates missing")
    for reader in readers:
        reader.cancel()
    for ws in connections:
        await ws.close()
    return latencies, errors


async def _read(
    ws: Any, room_id: int, measured: Callable[[float], None], errors: list[str]
) -> None:
    sent_ns = 0
    async for raw in ws:
        now = time.perf_counter_ns()
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind == "chat-room-updated" and frame["roomId"] == room_id:
            body = frame["lastMessage"]["body"].split()
            sent_ns = int(body[1]) if len(body) == 2 and body[0] == "bench" else 0
        elif kind == "total-unread-count-updated" and sent_ns:
            measured((now - sent_ns) / 1e9)
            sent_ns = 0
        elif kind == "error":
            errors.append(str(raw)[:200])


def _clean_redis(stack: Stack) -> None:
    if not stack.redis_url:
        return
    redis = stack.redis()
    for pattern in (f"{stack.prefix}:*", f"saq:{stack.prefix}:*", f"saq:job:{stack.prefix}:*"):
        keys = list(redis.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            redis.delete(*keys[start : start + 500])


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    latencies = sorted(result["latencies"])
    if len(latencies) < 2:
        return f"{result['name']:>10}: no badge updates measured {result['errors'][:3]}"
    quantiles = statistics.quantiles(latencies, n=100)
    return (
        f"{result['name']:>10}: {len(latencies)} badge updates, p50 {quantiles[49] * 1e3:.0f} ms, "
        f"p99 {quantiles[98] * 1e3:.0f} ms, max {latencies[-1] * 1e3:.0f} ms; "
        f"{result['pushed']} pushes done; CPU share daphne {result['cpu']['daphne']:.0%}, "
        f"worker {result['cpu']['worker']:.0%}"
        + (f"; errors: {result['errors'][:3]}" if result["errors"] else "")
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.push_isolation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--members", type=int, default=20, help="members of the room, connected")
    parser.add_argument("--rate", type=float, default=10, help="messages per second")
    parser.add_argument("--duration", type=float, default=20, help="seconds of sending")
    parser.add_argument("--push-delay", type=float, default=0.5, help="seconds per push")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-db", default="bench_push_isolation", help="dropped and made afresh"
    )
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs, alternating")
    parser.add_argument("--results", default=str(RESULTS / "push-isolation"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    results = []
    for _ in range(args.rounds):  # alternating, so a change of the machine's load hits both
        results += [run_mode(args, pushes=True), run_mode(args, pushes=False)]
    print(
        f"badge latency, {args.members} members connected (not viewing), {args.rate:g} msg/s for "
        f"{args.duration:g} s, push service {args.push_delay} s per push, {args.database}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for result in results:
        print(report(result, args))


if __name__ == "__main__":
    main()
