"""GET /metrics (and the push worker's metrics port): who may read it, and whose figures.

**Private.** With METRICS_TOKEN set, only `Authorization: Bearer <that token>` reads the
figures (compared in constant time); a wrong or missing one is 401. Without the variable the
endpoint is public in development (DEBUG on) and absent (404) in production, so forgetting the
token hides the figures rather than publishing them.

**Whole.** A server runs several processes (`serve --workers N`, several daphnes, push
workers), and a scrape reaches one of them. With PROMETHEUS_MULTIPROC_DIR set (before the
process starts: prometheus-client reads it at import), every process of the host writes its
figures to memory-mapped files in that directory and a scrape of any one process sums them
all: prometheus-client's multiprocess mode. Counters and histograms add up over processes,
the dead ones included (a restart does not lose counts); gauges say per metric how they
combine (chatproject.metrics: `livesum`, `livemax`), over live processes only: this module
drops the gauge files of processes that are gone before each scrape. Without the variable
each process reports only itself, as before (fine for one process).
"""

import hmac
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import make_server

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

logger = logging.getLogger(__name__)

_BEARER = "bearer "


def multiprocess_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def metrics_access(authorization: str) -> int:
    """The HTTP status for a request with this Authorization header: 200, 401 or 404."""
    token = str(getattr(settings, "METRICS_TOKEN", "") or "")
    if not token:
        return 200 if settings.DEBUG else 404
    presented = (
        authorization[len(_BEARER) :].strip() if authorization.lower().startswith(_BEARER) else ""
    )
    return 200 if hmac.compare_digest(presented.encode(), token.encode()) else 401


def metrics_payload() -> tuple[bytes, str]:
    """Prometheus text of every process of this host (multiprocess mode) or of this one."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    _forget_dead_processes(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    try:
        return generate_latest(registry), CONTENT_TYPE_LATEST
    except FileNotFoundError:  # a concurrent scrape dropped a dead process's file: again
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_processes(directory: Path) -> None:
    # prometheus-client leaves this to the server's supervisor (gunicorn's child_exit hook);
    # daphne, uvicorn and granian have none, so the scrape does it: a `live*` gauge of a
    # process that is gone would otherwise count forever. Pids are of this host, which is why
    # the directory must not be shared between hosts or containers.
    dead = set()
    for path in directory.glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            dead.add(int(pid_text))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path=str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found"}


def _metrics_wsgi_app(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    status = metrics_access(str(environ.get("HTTP_AUTHORIZATION", "")))
    if environ.get("PATH_INFO") not in ("/", "/metrics"):
        status = 404
    if status != 200:
        headers = [("Content-Type", "text/plain")]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        start_response(f"{status} {_REASONS[status]}", headers)
        return [b""]
    body, content_type = metrics_payload()
    start_response("200 OK", [("Content-Type", content_type)])
    return [body]


def serve_metrics(*, port: int, host: str) -> ThreadingWSGIServer:
    """Serve the same /metrics on a port of its own, on a daemon thread (a process with no
    HTTP server of its own: the push worker). Port 0 picks a free one (`.server_port`)."""
    httpd = make_server(
        host, port, _metrics_wsgi_app, ThreadingWSGIServer, handler_class=_SilentHandler
    )
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    return httpd
