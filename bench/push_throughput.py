"""Pushes per second through one push worker process: `python -m bench.push_throughput`.

    .venv/bin/python -m bench.push_throughput --webpush --messages 4000 --push-delay 0.5

Starts one push worker (`manage.py run_push_worker`) in its own process and waits until it
runs; then inserts the messages and their outbox rows in one transaction (as if they had been
sent while the worker was busy), or `--rate` messages per second, and times until every
delivery is recorded as sent. Each message goes to `--recipients` members with one device each
(one saq job per message, fanning out to its devices).

The push service is, with `--webpush`, the real WebPushBackend (VAPID, aes128gcm) against the
local Web Push double (notifications/tests/doubles/webpush.py) in a process of its own, taking
`--push-delay` seconds per request, and counting what it decrypted; without it,
DelayedLoggingPushBackend (a sleep of `--push-delay`, no protocol work).

Prints pushes/s, delivery latency p50/p99 (a message's created_at to its delivery's sent_at:
relay, queue, database and push; in a backlog run it is mostly the wait behind the backlog),
the worker's CPU time per push and its CPU share, and the double's CPU per push. `--py-spy
FILE` records a py-spy profile (speedscope JSON) of the worker during the run.

Runs against DATABASE_URL and REDIS_URL (an embedded Redis when unset) under a key prefix of its
own, and removes what it wrote from Redis; use a scratch database (it migrates it and adds rows).
Numbers only, no assertions: the machine's load moves them.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.push_throughput")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--recipients", type=int, default=1, help="members with a device")
    parser.add_argument("--concurrency", type=int, default=300, help="pushes in flight")
    parser.add_argument("--push-delay", type=float, default=0.5, help="seconds per push")
    parser.add_argument(
        "--webpush", action="store_true", help="real WebPushBackend against the Web Push double"
    )
    parser.add_argument(
        "--rate", type=float, default=0, help="messages per second (0: all at once, a backlog)"
    )
    parser.add_argument("--worker-log-level", default="WARNING", help="the worker's LOG_LEVEL")
    parser.add_argument("--py-spy", default="", help="write a py-spy profile of the worker here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    prefix = f"pushbench-{uuid.uuid4().hex[:6]}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ["REDIS_KEY_PREFIX"] = prefix
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from notifications.vapid import vapid_key_pair_generate

    call_command("migrate", verbosity=0)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "REDIS_URL": settings.REDIS_URL,  # the embedded one, if this process started it
        "PUSH_GRACE_SECONDS": "0",
        "NOTIFICATIONS_PUSH_DELAY_SECONDS": str(args.push_delay),
        "WEBPUSH_MAX_CONNECTIONS": str(args.concurrency),
        "NOTIFICATIONS_PUSH_BACKEND": "notifications.backends.DelayedLoggingPushBackend",
        # WARNING by default: the logging backends log every push at INFO.
        "LOG_LEVEL": args.worker_log_level,
    }
    service, origin = None, ""
    try:
        if args.webpush:
            private_key, public_key = vapid_key_pair_generate()
            service, origin = start_webpush_double(args.push_delay, public_key)
            env["WEBPUSH_VAPID_PRIVATE_KEY"] = private_key
            env["NOTIFICATIONS_PUSH_BACKEND"] = "notifications.webpush.WebPushBackend"
            devices = [("webpush", s["endpoint"], s["keys"]) for s in subscribe(origin, args)]
        else:
            devices = [("apns", f"{prefix}-{n}", {}) for n in range(args.recipients)]
        room_id, sender_id = _seed_people(prefix, devices)
        total = args.messages * args.recipients
        result = _measure(args, env, prefix, (room_id, sender_id), total, (service, origin))
    finally:
        if service is not None:
            service.terminate()
            service.wait(10)
        _clean_redis(prefix)
    backend = "WebPushBackend -> Web Push double" if args.webpush else "DelayedLoggingPushBackend"
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"{args.messages} messages x {args.recipients} devices = {total} pushes, {backend}, "
        f"{args.push_delay} s per push, concurrency {args.concurrency}, {database}, "
        f"{'backlog' if not args.rate else f'{args.rate:g} messages/s'}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for line in result:
        print(line)


def start_webpush_double(delay: float, public_key: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "notifications.tests.doubles.webpush", "--delay", str(delay)]
    process = subprocess.Popen(
        [*command, "--vapid-public-key", public_key], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    origin = process.stdout.readline().strip()
    if not origin.startswith("http"):
        process.kill()
        raise RuntimeError("the Web Push double did not start")
    return process, origin


def subscribe(origin: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    import requests

    with requests.Session() as session:
        return [session.post(f"{origin}/_subscribe").json() for _ in range(args.recipients)]


def double_stats(origin: str) -> dict[str, Any]:
    import requests

    result: dict[str, Any] = requests.get(f"{origin}/_stats", timeout=10).json()
    return result


def _seed_people(tag: str, devices: list[tuple[str, str, dict[str, str]]]) -> tuple[int, int]:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from chat.models import Membership, Room
    from notifications.models import Device

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"{tag}-{n}") for n in range(len(devices) + 1)]
    )
    users = list(user_model.objects.filter(username__startswith=f"{tag}-").order_by("pk"))
    with transaction.atomic():
        room = Room.objects.create(name=tag)
        Membership.objects.bulk_create([Membership(room=room, user=u) for u in users])
        Device.objects.bulk_create(
            [
                Device(user=user, kind=kind, address=address, keys=keys)
                for user, (kind, address, keys) in zip(users[1:], devices, strict=True)
            ]
        )
    return room.pk, users[0].pk


def _insert_messages(room_id: int, sender_id: int, start: int, count: int) -> None:
    from django.db import transaction

    from chat.models import Message
    from notifications import queue
    from notifications.models import PushOutbox

    with transaction.atomic():
        messages = Message.objects.bulk_create(
            [
                Message(room_id=room_id, sender_id=sender_id, body=f"m{n}")
                for n in range(start, start + count)
            ],
            batch_size=1000,
        )
        ids = [m.pk for m in messages]
        if None in ids:  # a backend that does not return ids on bulk_create
            ids = list(
                Message.objects.filter(room_id=room_id)
                .order_by("-pk")
                .values_list("pk", flat=True)[:count]
            )
        PushOutbox.objects.bulk_create([PushOutbox(message_id=m) for m in ids], batch_size=1000)
    queue.relay_nudge()  # as message_send does after its commit: the relay need not poll


def _measure(
    args: argparse.Namespace,
    env: dict[str, str],
    prefix: str,
    room_and_sender: tuple[int, int],
    total: int,
    double_and_origin: tuple[subprocess.Popen[str] | None, str],
) -> list[str]:
    import psutil

    from chatproject.redis_client import redis_connection
    from notifications import queue
    from notifications.models import PushDelivery

    room_id, sender_id = room_and_sender
    service, origin = double_and_origin

    log = ROOT / "bench" / "results" / f"{prefix}-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "manage.py", "run_push_worker", "--concurrency"]
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [*command, str(args.concurrency)], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    spy = None
    try:
        # Ready once it beats: Django set up, Redis connected, the relay and saq running.
        redis = redis_connection()
        _wait_for(lambda: redis.zcard(queue.heartbeat_key()) > 0, 60, "the worker started")
        process = psutil.Process(worker.pid)
        double = psutil.Process(service.pid) if service is not None else None
        if args.py_spy:
            spy = subprocess.Popen(
                [_py_spy(), "record", "-p", str(worker.pid), "-o", args.py_spy]
                + ["-f", "speedscope", "-r", "50", "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        cpu_before = sum(process.cpu_times()[:2])
        double_before = sum(double.cpu_times()[:2]) if double else 0.0
        started = time.perf_counter()
        sent = PushDelivery.objects.filter(status="sent", message__room_id=room_id)
        if not args.rate:
            _insert_messages(room_id, sender_id, 0, args.messages)
        else:
            inserted = 0
            while inserted < args.messages:
                due = min(args.messages, int((time.perf_counter() - started) * args.rate) + 1)
                if due > inserted:
                    _insert_messages(room_id, sender_id, inserted, due - inserted)
                    inserted = due
                time.sleep(0.05)
        # The count is in the database: nothing to wait on but a poll.
        deadline = time.monotonic() + 60 + total / 20
        while sent.count() < total:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"{sent.count()} of {total} sent; see {log}")
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        double_cpu = sum(double.cpu_times()[:2]) - double_before if double else 0.0
        latencies = [
            (sent_at - created_at).total_seconds()
            for sent_at, created_at in sent.values_list("sent_at", "message__created_at")
            if sent_at is not None  # always set on a sent delivery
        ]
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    quantiles = statistics.quantiles(latencies, n=100)
    lines = [
        f"{total} pushes in {elapsed:.1f} s through one worker: {total / elapsed:.0f} pushes/s",
        f"delivery latency p50 {quantiles[49]:.2f} s, p99 {quantiles[98]:.2f} s",
        f"worker CPU {cpu / total * 1e6:.0f} us/push ({cpu / elapsed:.0%} of a core; "
        f"{total / cpu:.0f} pushes/s if it had a core to itself)",
    ]
    if service is not None:
        counted = double_stats(origin)["pushes"]
        lines.append(
            f"the double decrypted {counted} pushes, its CPU {double_cpu / total * 1e6:.0f} us/push"
        )
    return lines


def _py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def _wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not {what} within {seconds} s")
        time.sleep(0.1)


def _clean_redis(prefix: str) -> None:
    from chatproject.redis_client import redis_connection

    redis = redis_connection()
    for pattern in (f"{prefix}:*", f"saq:{prefix}:*", f"saq:job:{prefix}:*"):
        keys = list(redis.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            redis.delete(*keys[start : start + 500])


if __name__ == "__main__":
    main()
