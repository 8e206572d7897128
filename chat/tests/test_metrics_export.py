"""GET /metrics is private with DEBUG off, and whole: the figures of every process.

The multiprocess tests run real processes that write prometheus-client's files in a directory
of their own; this test process reads them as a scrape would (chatproject.metrics_export).
"""

import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

from chatproject.metrics_export import serve_metrics

TOKEN = "s3cret-metrics-token"


def test_without_metrics_token_it_is_absent_with_debug_off(client: Client) -> None:
    assert not settings.DEBUG
    response = client.get("/metrics")
    assert response.status_code == 404
    assert "badge_latency" not in response.content.decode()


@override_settings(DEBUG=True)
def test_without_metrics_token_it_is_public_in_development(client: Client) -> None:
    assert client.get("/metrics").status_code == 200


@override_settings(METRICS_TOKEN=TOKEN)
@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer", f"Basic {TOKEN}", TOKEN],
)
def test_a_missing_or_wrong_token_is_401(client: Client, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "badge_latency" not in response.content.decode()


@pytest.mark.parametrize("debug", [False, True])
def test_the_right_token_reads_the_figures(client: Client, debug: bool) -> None:
    with override_settings(METRICS_TOKEN=TOKEN, DEBUG=debug):
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        assert "# TYPE badge_latency_seconds histogram" in response.content.decode()
        # The token is required in development too once it is set.
        assert client.get("/metrics").status_code == 401


@override_settings(METRICS_TOKEN=TOKEN)
def test_the_workers_metrics_port_keeps_the_same_rules() -> None:
    server = serve_metrics(port=0, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert "# TYPE badge_latency_seconds histogram" in answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()


# --- every process ---------------------------------------------------------------------------

# A process that counts, sets a gauge, says so, and then lives until its stdin closes.
_PROCESS = textwrap.dedent(
    """
    import sys
    from prometheus_client import Counter, Gauge
    Counter("demo_events_total", "events").inc(int(sys.argv[1]))
    Gauge("demo_backlog", "backlog", multiprocess_mode="livesum").set(int(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def _start(directory: Path, value: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _PROCESS, str(value)],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=30)


@override_settings(METRICS_TOKEN=TOKEN)
def test_figures_sum_over_processes_and_live_gauges_forget_dead_ones(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    first, second = _start(tmp_path, 3), _start(tmp_path, 4)

    def scrape() -> str:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        return response.content.decode()

    try:
        text = scrape()
        assert "demo_events_total 7.0" in text
        assert "demo_backlog 7.0" in text
        _stop(second)
        text = scrape()
        assert "demo_events_total 7.0" in text  # counts of a process that is gone remain
        assert "demo_backlog 3.0" in text  # its gauge does not
        assert not list(tmp_path.glob(f"gauge_livesum_{second.pid}.db"))
    finally:
        for process in (first, second):
            if process.poll() is None:
                _stop(process)
