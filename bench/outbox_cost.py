"""What the push outbox costs the send path: `python -m bench.outbox_cost`.

Times `chat.services.message_send` (the sender's whole synchronous path) with the outbox
receiver connected and disconnected, in alternating rounds so load drifts hit both alike.
Runs against DATABASE_URL and REDIS_URL under a key prefix of its own; use a scratch database
(it migrates it and adds users, a room and messages).
"""

import argparse
import os
import statistics
import time
import uuid


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox_cost")
    parser.add_argument("--sends", type=int, default=400, help="per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ["REDIS_KEY_PREFIX"] = f"outboxcost-{tag}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db.models.signals import post_save

    from chat.models import Message
    from chat.services import message_send
    from chat.tests.helpers import make_room, make_user
    from chatproject import lanes
    from notifications import receivers

    settings.CHAT_RATE_LIMIT_MESSAGES = 0
    call_command("migrate", verbosity=0)
    users = [make_user(f"oc{tag}{n}") for n in range(2)]
    room = make_room(f"oc{tag}", users)

    def timed(label: str) -> list[float]:
        took = []
        for n in range(args.sends):
            started = time.perf_counter()
            message_send(
                sender_id=users[0].pk, room_id=room.pk, body="x", client_message_id=f"{label}{n}"
            )
            took.append((time.perf_counter() - started) * 1000)
            lanes.flush(5)  # the receivers' work is not the sender's, and must not pile up
        return took

    timed("warm")
    with_outbox: list[float] = []
    without: list[float] = []
    for r in range(args.rounds):
        with_outbox += timed(f"w{r}-")
        post_save.disconnect(sender=Message, dispatch_uid="notifications.message_saved")
        without += timed(f"n{r}-")
        post_save.connect(
            receivers.message_saved, sender=Message, dispatch_uid="notifications.message_saved"
        )
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    for name, took in (("with outbox", with_outbox), ("without", without)):
        took.sort()
        print(
            f"{engine} {name:12} message_send p50 {statistics.median(took):.2f} ms, "
            f"p90 {took[int(len(took) * 0.9)]:.2f} ms ({len(took)} sends)"
        )


if __name__ == "__main__":
    main()
