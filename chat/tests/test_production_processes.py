"""Two real daphne processes run as production runs them (DEBUG off, METRICS_TOKEN, one
PROMETHEUS_MULTIPROC_DIR): a scrape of either shows both processes' figures, and sign-in
failures made through either count toward one throttle."""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.tests.helpers import PASSWORD, make_user
from chat.tests.processes import Daphne, start_servers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-token-for-the-processes"


@pytest.fixture
def servers(django_db_setup: None, tmp_path: Path) -> Iterator[list[Daphne]]:
    pair = start_servers(
        2,
        DJANGO_DEBUG="0",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        DJANGO_STATIC_ROOT=str(tmp_path / "no-static-files-needed-here"),
    )
    yield pair
    for server in pair:
        server.stop()


def _request(server: Daphne, path: str, body: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def _sign_in(server: Daphne, password: str) -> int:
    status, _ = _request(server, "/api/auth/token", {"username": "alice", "password": password})
    return status


def _sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def test_metrics_are_private_and_whole_and_the_throttle_is_shared(servers: list[Daphne]) -> None:
    first, second = servers
    make_user("alice")
    with urllib.request.urlopen(f"http://127.0.0.1:{first.port}/healthz", timeout=10):
        pass
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"http://127.0.0.1:{first.port}/metrics", timeout=10)
    assert anonymous.value.code == 401

    for _ in range(4):
        assert _sign_in(first, "wrong") == 401
    for _ in range(6):
        assert _sign_in(second, "wrong") == 401
    # Ten failures in all, through two processes: the pair is locked on both.
    assert _sign_in(first, PASSWORD) == 429
    assert _sign_in(second, PASSWORD) == 429

    # Either process answers with the figures of both.
    for server in servers:
        status, text = _request(server, "/metrics")
        assert status == 200
        assert _sample(text, "signin_failures_total") == 10.0
        assert _sample(text, "signin_refused_total") == 2.0
        assert _sample(text, "signin_locks_total") == 1.0

    # The sampled gauges are written by each process's sampler thread within a second.
    deadline = time.monotonic() + 15
    text = ""
    while time.monotonic() < deadline:
        _, text = _request(first, "/metrics")
        if _sample(text, "connection_queued_frames") is not None:
            break
        time.sleep(0.2)
    assert _sample(text, "connection_queued_frames") == 0.0
    assert _sample(text, "connection_queue_depth_max") == 0.0
