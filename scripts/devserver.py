"""What `make run` runs: the whole stack on a machine with no Redis and no PostgreSQL.

Starts (or reuses, when REDIS_URL is set) a Redis first, so every child process inherits
REDIS_URL and shares that one server; then migrates, seeds demo data, and runs daphne and the
push worker side by side until either stops or the user presses Ctrl-C. The embedded Redis is
stopped by its own atexit hook when this script ends.

`WEB_PROCESSES=N` (`make run PROCS=N`) runs N daphne processes on consecutive ports from
PORT, and N push workers, as production would behind a proxy (README "Running many
processes"): every process shares the one database and the one Redis.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatproject.embedded_redis import redis_url_from_environment  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
DEMO_PASSWORD = "demo"
SEED_ARGS = ["--users", "5", "--rooms", "3", "--members-per-room", "3"]


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    port = int(os.environ.get("PORT") or 8000)
    processes = max(1, int(os.environ.get("WEB_PROCESSES") or 1))
    redis_was_given = bool(os.environ.get("REDIS_URL"))
    redis_url = redis_url_from_environment()
    print(f"Redis: {redis_url} ({'from REDIS_URL' if redis_was_given else 'embedded'})")

    migrate = subprocess.run([*MANAGE, "migrate", "--noinput"], cwd=ROOT)
    if migrate.returncode != 0:
        return migrate.returncode
    seed = subprocess.run(
        [*MANAGE, "seed_demo", *SEED_ARGS, "--password", DEMO_PASSWORD],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    if seed.returncode != 0:
        print(seed.stdout, end="")
        return seed.returncode
    print_demo_summary(seed.stdout, port)
    # Refused (its message on stderr) when DEBUG is off; the stack runs without it then.
    staff = subprocess.run([*MANAGE, "create_demo_staff"], cwd=ROOT, stdout=subprocess.DEVNULL)
    if staff.returncode == 0:
        print(
            f"Staff admin: http://127.0.0.1:{port}/admin/ (login staff / demo, development only)\n"
        )

    commands = []
    for n in range(processes):
        daphne_args = ["-b", "127.0.0.1", "-p", str(port + n), "chatproject.asgi:application"]
        commands.append([sys.executable, "-m", "daphne", *daphne_args])
        # Workers share one saq queue; each (message, device) delivery row is claimed once.
        commands.append([*MANAGE, "run_push_worker"])
    if processes > 1:
        print(f"{processes} daphne processes and {processes} push workers:")
        for n in range(processes):
            print(f"  http://127.0.0.1:{port + n}/  ws://127.0.0.1:{port + n}/ws/chat/")
    return supervise(commands)


def supervise(commands: list[list[str]]) -> int:
    """Run the commands; forward SIGINT/SIGTERM to them; when one exits, stop the rest and
    return its exit code."""
    children: list[subprocess.Popen[bytes]] = []
    signals_seen = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        # A second Ctrl-C means "now": do not wait for a graceful shutdown.
        sig = signum if signals_seen == 1 else signal.SIGKILL
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    # Handlers first: children then start with default dispositions, not an inherited SIG_IGN
    # (as under `nohup` or `&`), so the signals we forward do reach them.
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for command in commands:
        # Own process groups: a terminal's Ctrl-C reaches only this script, which forwards it once.
        children.append(subprocess.Popen(command, cwd=ROOT, process_group=0))
    if signals_seen:  # asked to stop while starting: some children missed the signal
        for child in children:
            child.terminate()
    while (exited := next((c for c in children if c.poll() is not None), None)) is None:
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    code = exited.returncode
    return 128 - code if code < 0 else code


def print_demo_summary(seed_stdout: str, port: int) -> None:
    summary = _last_json_object(seed_stdout)
    if summary is None:
        print(seed_stdout, end="")
        return
    names = {user["id"]: user["username"] for user in summary.get("users", [])}
    print(f"\nDemo users (password for all: {DEMO_PASSWORD}):")
    print("  " + ", ".join(names.values()))
    print("Demo rooms:")
    for room in summary.get("rooms", []):
        members = ", ".join(names.get(member, str(member)) for member in room.get("members", []))
        print(f"  {room['name']} (id {room['id']}): {members}")
    python = os.path.relpath(sys.executable, ROOT)
    python = sys.executable if python.startswith("..") else python
    credentials = f'{{"username":"user1","password":"{DEMO_PASSWORD}"}}'
    print(f"\nThe chat page: http://127.0.0.1:{port}/ (sign in as user1, password {DEMO_PASSWORD})")
    print("\nGet a token, then open a WebSocket with it:")
    print(f"  curl -X POST localhost:{port}/api/auth/token -d '{credentials}'")
    print(f"  {python} -m websockets 'ws://127.0.0.1:{port}/ws/chat/?token=TOKEN'\n")


def _last_json_object(text: str) -> dict[str, Any] | None:
    for candidate in [text, *reversed(text.splitlines())]:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C during migrate or seed_demo
        sys.exit(128 + signal.SIGINT)
