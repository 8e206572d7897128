"""The real stack for browser tests: a daphne (or `manage.py serve`) subprocess on the test
database and Redis, launched by the helpers of chat/tests/processes.py.

The server process must see what the test writes, so it is given the test database itself
(SQLite's test database is a file under .run/, see the root conftest.py; on PostgreSQL the
`test_` database) and the test run's Redis and key prefix, so its channel layer meets the
test process's and the per-test key cleanup covers its keys too (all but its Redis watch's
sentinel, which the cleanup spares: see the root conftest.py).
"""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from chat.tests.processes import (
    database_url_of_tests,
    free_port,
    server_command,
    stop_process,
    wait_answering,
)

# Debian's chromium, never a downloaded browser (CHAT_CHROMIUM overrides the path), with the
# flags a machine with a closed network needs.
CHROMIUM = os.environ.get("CHAT_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOW_TO_ENABLE = "install Chromium with `apt-get install chromium` (as root) to run them"


def browser_missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -r requirements-dev.txt)"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium is not installed at {CHROMIUM}; {HOW_TO_ENABLE}"
    return None


ROOT = Path(settings.BASE_DIR)


def collect_static(root: Path) -> None:
    """`collectstatic` into `root`, as an operator runs it before starting the server."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_STATIC_ROOT": str(root), "REDIS_URL": settings.REDIS_URL},
        check=True,
        timeout=120,
    )


class LiveServer:
    """daphne serving chatproject on a fixed port, which survives restarts; given `workers`,
    `manage.py serve` with that many.

    In development mode (DEBUG on) unless `env` says otherwise, e.g. DJANGO_DEBUG=0 with the
    DJANGO_STATIC_ROOT a `collectstatic` wrote.
    """

    def __init__(self, log_path: Path, *, workers: int | None = None, **env: str) -> None:
        self.port = free_port()
        self.workers = workers
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url_of_tests(),
            "REDIS_URL": settings.REDIS_URL,
            "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
            "DJANGO_DEBUG": "1",  # daphne serves the static files
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            **env,
        }

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                server_command(self.port, workers=self.workers),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_answering(self.process, self.port, lambda: f"see {self.log_path}", timeout)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()
