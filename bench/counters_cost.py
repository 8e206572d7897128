"""What one message costs the unread counters per member: `python bench/counters_cost.py`.

Loads `--members` users into one room, then calls `badges.counters.apply_message` `--reps`
times for a new message to all of them (one sender, the others unread, as in a busy room) and
prints, per member of one call:

- `python`: this process's CPU time (time.process_time) in `apply_message`: building the keys
  and arguments, encoding them, parsing the reply into badges;
- `redis`: the Redis server's CPU time (INFO cpu, user + sys) over the same calls, almost all
  of it the Lua call. It counts every client of that server, so on a shared Redis read the
  lower figures, or point `--redis-url` at a private one.

With `--against REF` (say `main`), each round runs the measure twice, in fresh processes:
on REF's tree (`git archive REF`, unpacked in a temporary directory) and on this one,
alternating, so load drifts hit both alike; then it prints each round and the ranges.

Keys go under a prefix of their own (REDIS_KEY_PREFIX), removed at the end; nothing is flushed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ROOM = 7


def measure(members: int, reps: int, cap: int) -> dict[str, float]:
    """One run on the code of the current directory's tree."""
    import django

    django.setup()
    from badges import counters
    from badges.counters import RoomTruth
    from chatproject.redis_client import redis_connection

    redis = redis_connection()
    truths = {user_id: [RoomTruth(ROOM, 0, 0, [])] for user_id in range(1, members + 1)}
    counters.load_users(truths, cap=cap)
    modes = {user_id: "unread" for user_id in truths}
    modes[1] = "same"
    message_ids = iter(range(100, 100 + 1 + reps * 2))

    def apply() -> None:
        counters.apply_message(room_id=ROOM, message_id=next(message_ids), modes=modes, cap=cap)

    for _ in range(reps // 4 or 1):  # the script cached, the connection warm
        apply()
    before = redis.info("cpu")
    started = time.process_time()
    for _ in range(reps):
        apply()
    python = time.process_time() - started
    after = redis.info("cpu")
    redis_cpu = sum(after[f] - before[f] for f in ("used_cpu_user", "used_cpu_sys"))
    prefix = os.environ["REDIS_KEY_PREFIX"]
    for keys in _batches(redis.scan_iter(match=f"{prefix}:*", count=1000), 1000):
        redis.delete(*keys)
    per_member = 1e6 / reps / members
    return {"python": python * per_member, "redis": redis_cpu * per_member}


def _batches(items: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run_in(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    """`measure` in a fresh process whose imports come from `tree`."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one"]
    command += ["--members", str(args.members), "--reps", str(args.reps), "--cap", str(args.cap)]
    command += ["--redis-url", args.redis_url]
    done = subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/counters_cost.py")
    parser.add_argument("--members", type=int, default=1000, help="members of the room")
    parser.add_argument("--reps", type=int, default=20, help="messages measured per run")
    parser.add_argument("--cap", type=int, default=200, help="MAX_TRACKED_UNREAD")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree, alternating")
    parser.add_argument("--against", metavar="REF", help="a git ref to compare with, e.g. main")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["REDIS_URL"] = args.redis_url
    os.environ["REDIS_KEY_PREFIX"] = f"counterscost-{uuid.uuid4().hex[:6]}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if args.one:
        sys.path[0] = os.getcwd()  # the tree under test, not this file's directory
        print(json.dumps(measure(args.members, args.reps, args.cap)))
        return
    with tempfile.TemporaryDirectory(prefix="counters-cost-") as scratch:
        trees = {"this tree": HERE}
        if args.against:
            archive = subprocess.run(
                ["git", "archive", args.against], cwd=HERE, check=True, capture_output=True
            )
            subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, check=True)
            trees = {args.against: Path(scratch), **trees}
        print(f"{args.members} members, {args.reps} messages a run; µs of CPU per member")
        figures: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
        for round_ in range(1, args.rounds + 1):
            for label, tree in trees.items():
                run = _run_in(tree, args)
                figures[label].append(run)
                print(
                    f"round {round_}  {label:12s} python {run['python']:6.2f}"
                    f"  redis {run['redis']:6.2f}"
                )
        for label, runs in figures.items():
            print(
                f"{label:12s} python {_span([r['python'] for r in runs])}"
                f"  redis {_span([r['redis'] for r in runs])}"
            )


if __name__ == "__main__":
    main()
