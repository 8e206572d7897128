"""Pushes per second through one push worker: `python -m bench.push_throughput`.

Seeds a room whose members each have one device, inserts messages and their outbox rows in
bulk (as if they had been sent while no worker ran), then runs one PushWorker in this process
against DelayedLoggingPushBackend (every push takes --push-delay seconds, like a slow push
service) and times until every delivery is recorded as sent. Runs against DATABASE_URL and
REDIS_URL (an embedded Redis when unset) under a key prefix of its own, and removes what it
wrote from Redis; use a scratch database (it migrates it and adds rows).
"""

import argparse
import asyncio
import os
import time
import uuid


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.push_throughput")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--recipients", type=int, default=1, help="members with a device")
    parser.add_argument("--concurrency", type=int, default=300, help="pushes in flight")
    parser.add_argument("--push-delay", type=float, default=0.5)
    args = parser.parse_args()
    prefix = f"pushbench-{uuid.uuid4().hex[:6]}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ["REDIS_KEY_PREFIX"] = prefix
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PUSH_GRACE_SECONDS = 0
    settings.NOTIFICATIONS_PUSH_BACKEND = "notifications.backends.DelayedLoggingPushBackend"
    settings.NOTIFICATIONS_PUSH_DELAY_SECONDS = args.push_delay
    call_command("migrate", verbosity=0)
    total = _seed(prefix, args.messages, args.recipients)
    print(f"{args.messages} messages x {args.recipients} devices = {total} pushes queued")
    elapsed = asyncio.run(_drain(total, args.concurrency))
    print(
        f"{total} pushes in {elapsed:.1f} s through one worker: {total / elapsed:.0f} pushes/s "
        f"(concurrency {args.concurrency}, {args.push_delay} s per push, "
        f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})"
    )
    _clean_redis(prefix)


def _seed(tag: str, messages: int, recipients: int) -> int:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from chat.models import Membership, Message, Room
    from notifications.models import Device, PushOutbox

    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"{tag}-{n}") for n in range(recipients + 1)]
    )
    users = list(get_user_model().objects.filter(username__startswith=f"{tag}-"))
    with transaction.atomic():
        room = Room.objects.create(name=tag)
        Membership.objects.bulk_create([Membership(room=room, user=u) for u in users])
        Device.objects.bulk_create(
            [Device(user=u, kind="apns", address=f"{tag}-{u.pk}") for u in users[1:]]
        )
        Message.objects.bulk_create(
            [Message(room=room, sender=users[0], body=f"m{n}") for n in range(messages)],
            batch_size=1000,
        )
        PushOutbox.objects.bulk_create(
            [PushOutbox(message_id=m) for m in room.messages.values_list("pk", flat=True)],
            batch_size=1000,
        )
    return messages * recipients


async def _drain(total: int, concurrency: int) -> float:
    from channels.db import database_sync_to_async

    from notifications.models import PushDelivery
    from notifications.worker import PushWorker

    sent = database_sync_to_async(lambda: PushDelivery.objects.filter(status="sent").count())
    before = await sent()
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(PushWorker(concurrency=concurrency).run(stop))
    while True:  # the count is in the database: nothing to wait on but a poll
        if await sent() - before >= total:
            break
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


def _clean_redis(prefix: str) -> None:
    from chatproject.redis_client import redis_connection

    redis = redis_connection()
    for pattern in (f"{prefix}:*", f"saq:{prefix}:*", f"saq:job:{prefix}:*"):
        keys = list(redis.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            redis.delete(*keys[start : start + 500])


if __name__ == "__main__":
    main()
