"""The page as production serves it: DEBUG off, after `collectstatic`, daphne alone (no web
server in front), its scripts, styles and icon served by the application (ServeStatic); once
under plain daphne and once under `manage.py serve --workers 2`."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password

from chat.tests.browser.conftest import ARTIFACTS, Browsing
from chat.tests.browser.stack import LiveServer, collect_static
from chat.tests.browser.test_page import WAIT_MS, room_button, say
from chat.tests.helpers import make_room, make_user

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips every test here and says how to enable them
    expect = None  # type: ignore[assignment]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def static_root(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("static")
    collect_static(root)
    return root


@pytest.fixture(scope="module", params=[None, 2], ids=["daphne", "serve-2-workers"])
def production_server(static_root: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LiveServer(
        ARTIFACTS / ("daphne-production.log" if request.param is None else "serve-production.log"),
        workers=request.param,
        DJANGO_DEBUG="0",
        DJANGO_STATIC_ROOT=str(static_root),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def production(
    browser: Any, production_server: LiveServer, request: pytest.FixtureRequest
) -> Iterator[Browsing]:
    session = Browsing(browser, production_server, request.node.name)
    yield session
    session.close()


def test_the_page_works_with_debug_off_after_collectstatic(production: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    alice.password = make_password("alice-pw-1", hasher=PBKDF2PasswordHasher())
    alice.save(update_fields=["password"])
    failed: list[str] = []
    context = production.browser.new_context(base_url=production.live.base_url)
    production.contexts.append(context)
    page = production.watch(context.new_page())
    page.on("requestfailed", lambda request: failed.append(request.url))
    # (Not every 4xx: without a VAPID key the push key's address is a 404 by design.)
    page.on(
        "response",
        lambda r: failed.append(r.url) if r.status >= 400 and "/static/" in r.url else None,
    )
    static_answers: dict[str, dict[str, str]] = {}
    page.on(
        "response",
        lambda r: static_answers.update({r.url: r.headers}) if "/static/" in r.url else None,
    )

    # Signing in over plain HTTP with DEBUG off: the cookies are not secure-only.
    page.goto("/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-pw-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as alice")).to_be_visible()
    # The scripts ran: the socket delivered its snapshot, and a message raises the badge.
    page.wait_for_function("() => window.chatDebug && window.chatDebug.badges.version >= 0")
    say(bob, general, "hello from production")
    expect(page).to_have_title("(1) Chat", timeout=WAIT_MS)
    expect(room_button(page, "general", 1)).to_contain_text("bob: hello from production")
    # The stylesheet applied: the announcer is visually hidden by chat.css alone.
    width = page.locator("#announcer").evaluate("(el) => el.getBoundingClientRect().width")
    assert width <= 1
    production.screenshot(page, "production")

    assert failed == []
    assert production.errors == []
    hashed = re.compile(r"/static/chat/(app|socket|badges|rooms|room|push)\.[0-9a-f]{12}\.js$")
    scripts = [url for url in static_answers if hashed.search(url)]
    assert len(scripts) == 6, sorted(static_answers)
    css = [url for url in static_answers if re.search(r"/chat\.[0-9a-f]{12}\.css$", url)]
    assert css, sorted(static_answers)
    for url in [*scripts, *css]:
        assert "immutable" in static_answers[url]["cache-control"], url
        assert static_answers[url].get("content-encoding") in {"gzip", "br"}, url

    # The service worker is still served from the root, never cached.
    worker = page.request.get("/sw.js")
    assert worker.status == 200
    assert worker.headers["service-worker-allowed"] == "/"
