"""Browser tests: Playwright's Python API driving Debian's chromium against the real stack.

Skipped, with a line in the summary saying how to enable them, when the playwright package or
the chromium binary is missing. No browser is ever downloaded: `playwright install` is not
needed, Playwright only drives the system's chromium (CHAT_CHROMIUM overrides its path).
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from chat.tests.browser.stack import CHROMIUM, CHROMIUM_ARGS, LiveServer, browser_missing
from chat.tests.helpers import PATIENCE_S
from chatproject import lanes

ARTIFACTS = Path(settings.BASE_DIR) / ".run" / "artifacts"


MISSING = browser_missing()
_outcomes: dict[str, int] = {"passed": 0, "failed": 0, "skipped": 0}
_timing: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "browser" not in report.keywords:
        return
    _timing["total"] = _timing.get("total", 0.0) + report.duration
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[report.outcome] = _outcomes.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not any(_outcomes.values()):
        return
    if MISSING is not None:
        line = f"browser tests SKIPPED: {MISSING}"
        terminalreporter.write_sep("=", line, yellow=True, bold=True)
        return
    measured = ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in _latencies.items())
    terminalreporter.write_sep(
        "=",
        f"browser tests: {_outcomes['passed']} passed, {_outcomes['failed']} failed "
        f"in {_timing.get('total', 0):.1f} s (Chromium); screenshots in {ARTIFACTS}"
        + (f"; {measured}" if measured else ""),
    )


_latencies: dict[str, float] = {}


@pytest.fixture
def record_latency() -> Any:
    def record(name: str, seconds: float) -> None:
        _latencies[name] = seconds

    return record


@pytest.fixture(autouse=True)
def _browser_tests_need_chromium() -> None:
    if MISSING is not None:
        pytest.skip(MISSING)


# Module scope, not session: while Playwright's sync API is alive its event loop counts as
# running in this thread, which would change how every later test of the run behaves.


@pytest.fixture(scope="module")
def _allow_orm_beside_playwright() -> Iterator[None]:
    # Playwright's running loop makes Django's async-safety check refuse the test's own ORM
    # calls; the ORM is used from this one thread only, as in any sync test.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def live_server_process(django_db_setup: None, django_db_blocker: Any) -> Iterator[LiveServer]:
    if MISSING is not None:
        pytest.skip(MISSING)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LiveServer(ARTIFACTS / "daphne.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live(live_server_process: LiveServer) -> Iterator[LiveServer]:
    # A test that stopped the server and failed leaves it stopped: start it for the next one.
    if live_server_process.process is None or live_server_process.process.poll() is not None:
        live_server_process.start()
    yield live_server_process


@pytest.fixture(scope="module")
def browser(_allow_orm_beside_playwright: None) -> Iterator[Any]:
    if MISSING is not None:
        pytest.skip(MISSING)
    from playwright.sync_api import expect, sync_playwright

    # Web-first assertions wait this long by default (Playwright's own default is 5 s): a
    # guard for a loaded machine, not a claim about speed.
    expect.set_options(timeout=PATIENCE_S * 1000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Browsing:
    """Contexts and pages of one test; collects console warnings and page errors."""

    def __init__(self, browser: Any, live: LiveServer, test_name: str) -> None:
        self.browser = browser
        self.live = live
        self.test_name = test_name
        self.contexts: list[Any] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def context_for(self, user: Any, **options: Any) -> Any:
        """A browser context signed in as the user (a session made here, as after a login)."""
        client = Client()
        client.force_login(user)
        context = self.browser.new_context(base_url=self.live.base_url, **options)
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": self.live.base_url,
                }
            ]
        )
        self.contexts.append(context)
        return context

    def anonymous_page(self) -> Any:
        context = self.browser.new_context(base_url=self.live.base_url)
        self.contexts.append(context)
        return self.watch(context.new_page())

    def watch(self, page: Any) -> Any:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page

    def open_page(self, context: Any) -> Any:
        """The chat page, once its WebSocket has delivered the snapshot.

        The receiver lanes of this process count and publish the test's messages after
        `message_send` returned; they drain first, so the page starts from their result
        rather than meeting their frames at a moment the test does not choose."""
        assert lanes.flush(PATIENCE_S), "the receiver lanes did not drain"
        page = self.watch(context.new_page())
        page.goto("/")
        page.wait_for_function("() => window.chatDebug && window.chatDebug.badges.version >= 0")
        return page

    def screenshot(self, page: Any, name: str) -> Path:
        path = ARTIFACTS / f"{self.test_name}-{name}.png"
        page.screenshot(path=str(path))
        return path

    def _console(self, message: Any) -> None:
        if message.type in ("warning", "error"):
            self.warnings.append(message.text)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsing(browser: Any, live: LiveServer, request: pytest.FixtureRequest) -> Iterator[Browsing]:
    session = Browsing(browser, live, request.node.name)
    yield session
    session.close()
