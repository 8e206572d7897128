"""The stack under test: Redis, the database, daphne and the push worker, as real processes.

Redis is the embedded server (chatproject.embedded_redis) unless REDIS_URL is set; every key
then lives under a fresh REDIS_KEY_PREFIX. The database is a new SQLite file under
bench/results/, or the PostgreSQL database DATABASE_URL names (dropped and created afresh), or
`bench` on 127.0.0.1:5432 (`--database postgres`). The server is `procs` processes of one ASGI
server (daphne unless `server` names another of SERVERS), each on its own port, sharing that
database and Redis. Every child is killed on exit, whatever ends the run.

Whatever the server, its processes are named `daphne0`, `daphne1` … in the CPU and RSS figures
(the name the report and the goals have always read), and `daphne` is their sum.
"""

import atexit
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import redis

from chatproject.embedded_redis import redis_url_from_environment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_BENCH_URL = "postgresql://postgres@127.0.0.1:5432/bench"


# Each server as production would run it; `bench.servers` compares them (docs/performance.md).
SERVERS: dict[str, list[str]] = {
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}"],
    # uvloop, httptools, the sans-I/O websockets implementation, no per-message deflate (the
    # others do not compress either), no access log (daphne logs no line per frame either).
    "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--loop", "uvloop"]
    + ["--http", "httptools", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false"]
    + ["--lifespan", "off", "--no-access-log", "--log-level", "warning"],
    "granian": ["-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}"]
    + ["--loop", "uvloop", "--workers", "1", "--log-level", "warning"],
}


def server_command(server: str, port: int, application: str) -> list[str]:
    args = [arg.format(port=port) for arg in SERVERS[server]]
    return [sys.executable, *args, application]


def with_children(pid: int) -> list[psutil.Process]:
    """A process and its descendants: granian serves from a worker process it starts."""
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_from_environment(default: str) -> str:
    """`postgres` when DATABASE_URL names a PostgreSQL database, else `default`."""
    url = os.environ.get("DATABASE_URL", "")
    return "postgres" if url.startswith(("postgres://", "postgresql://")) else default


class Stack:
    def __init__(
        self,
        *,
        database: str,
        push_delay: float,
        logs: Path,
        procs: int = 1,
        server: str = "daphne",
    ) -> None:
        self.database = database
        self.server = server
        self.push_delay = push_delay
        self.logs = logs
        self.ports = [free_port() for _ in range(procs)]
        self.port = self.ports[0]
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        self.children: list[subprocess.Popen[bytes]] = []
        self.daphnes: list[subprocess.Popen[bytes]] = []
        self.daphne: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.redis_url = ""
        self.redis_given = False
        self.env: dict[str, str] = {}
        atexit.register(self.stop)

    # --- start ------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for stale in [*self.logs.glob("memwatch-*.jsonl"), *self.logs.glob("tracemalloc-*")]:
            stale.unlink()
        self.redis_given = bool(os.environ.get("REDIS_URL"))
        self.redis_url = redis_url_from_environment()  # embedded unless REDIS_URL is set
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "DATABASE_URL": self._database_url(),
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_DEBUG": "0",  # DEBUG keeps every query in memory: not what production runs
            "LOG_LEVEL": "WARNING",
            "CHAT_RATE_LIMIT_MESSAGES": "0",
            "NOTIFICATIONS_PUSH_BACKEND": "bench.pushes.RecordingDelayedPushBackend",
            "NOTIFICATIONS_PUSH_DELAY_SECONDS": str(self.push_delay),
            # No grace delay: the bench times the push itself, not the wait before it.
            "PUSH_GRACE_SECONDS": "0",
            "PYTHONPATH": str(ROOT),
            "BENCH_MEMWATCH": str(self.logs.resolve()),
        }
        self._run([sys.executable, "manage.py", "migrate", "--noinput"], "migrate")

    def _database_url(self) -> str:
        if self.database == "postgres":
            import psycopg

            url = os.environ.get("DATABASE_URL") or POSTGRES_BENCH_URL
            parts = urlsplit(url)
            name = parts.path.lstrip("/")
            admin = urlunsplit(parts._replace(path="/postgres"))
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
            return url
        path = self.logs / "bench.sqlite3"
        for stale in self.logs.glob("bench.sqlite3*"):
            stale.unlink()
        return f"sqlite:///{path}"

    def seed(self, plan: dict[str, Any]) -> dict[str, Any]:
        out = self._run([sys.executable, "-m", "bench.seed"], "seed", stdin=json.dumps(plan))
        result: dict[str, Any] = json.loads(out)
        return result

    def serve(self) -> None:
        for index, port in enumerate(self.ports):
            name = "daphne" if index == 0 else f"daphne{index}"
            command = server_command(self.server, port, "bench.asgi:application")
            self.daphnes.append(self._spawn(command, name))
        self.daphne = self.daphnes[0]
        self.worker = self._spawn([sys.executable, "manage.py", "run_push_worker"], "worker")
        for daphne, port in zip(self.daphnes, self.ports, strict=True):
            self._wait_listening(daphne, port)

    def _wait_listening(self, daphne: subprocess.Popen[bytes], port: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if daphne.poll() is not None:
                raise RuntimeError(f"{self.server} on port {port} exited; see {self.logs}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.server} on port {port} did not listen within 60 s")

    def port_for(self, user_id: int) -> int:
        """Which server process a user's connections go to: users spread evenly."""
        return self.ports[user_id % len(self.ports)]

    def _run(self, command: list[str], name: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        (self.logs / f"{name}.log").write_text(done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    def _spawn(self, command: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the child
        child = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.children.append(child)
        return child

    # --- observe ----------------------------------------------------------------------

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def command_stats(self) -> dict[str, int]:
        """Redis calls by command so far (INFO commandstats)."""
        info = self.redis().info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}

    def pushed(self) -> list[tuple[int, int]]:
        """(send ns, push finished ns) of every product push the worker has finished."""
        rows = self.redis().lrange(f"{self.prefix}:bench:pushed", 0, -1)
        return [(int(a), int(b)) for a, b in (row.split() for row in rows)]

    def servers(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        """(name, process) of every server process: daphne0…, then the worker."""
        out = [(f"daphne{index}", child) for index, child in enumerate(self.daphnes)]
        return out + ([("worker", self.worker)] if self.worker is not None else [])

    def rss(self) -> dict[str, int]:
        """RSS per server process; `daphne` is the sum over the daphne processes."""
        out = {}
        for name, child in self.servers():
            if child.poll() is None:
                out[name] = sum(p.memory_info().rss for p in with_children(child.pid))
        out["daphne"] = sum(v for k, v in out.items() if k.startswith("daphne"))
        return out

    def threads(self) -> dict[str, int]:
        """Threads per server process: each new thread may get its own malloc arena."""
        return {
            name: sum(p.num_threads() for p in with_children(child.pid))
            for name, child in self.servers()
            if child.poll() is None
        }

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far of each server process, and of Redis.

        Redis' own counters (INFO cpu): exact for the embedded server; a shared REDIS_URL
        server also counts other clients' work.
        """
        out = {}
        for name, child in self.servers():
            if child.poll() is None:
                out[name] = sum(
                    times.user + times.system
                    for times in (p.cpu_times() for p in with_children(child.pid))
                )
        try:
            info = self.redis().info("cpu")
            out["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        except redis.RedisError:
            pass
        return out

    # --- stop -------------------------------------------------------------------------

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()


class RssSampler:
    """Samples the server processes' RSS every `every` seconds in a background thread."""

    def __init__(self, stack: Stack, every: float = 0.5) -> None:
        self.stack = stack
        self.every = every
        self.samples: list[tuple[int, dict[str, int]]] = []
        self.threads: list[tuple[int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                now = time.perf_counter_ns()
                self.samples.append((now, self.stack.rss()))
                self.threads.append((now, self.stack.threads()))
            except psutil.Error:
                continue
