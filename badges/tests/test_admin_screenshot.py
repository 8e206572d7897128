"""One look at the staff admin in a real browser: the README's screenshot.

Playwright drives Debian's chromium (never a downloaded browser) against Django's live server;
skipped, saying why, where either is missing. The screenshot goes to .run/artifacts/admin.png;
with CHAT_UPDATE_DOCS_SCREENSHOT=1 it also refreshes docs/admin.png (as the page's test does).

The browser runs on a thread of its own: Playwright's sync API refuses a thread where an event
loop is running, which another test's session-wide Playwright may have left in this one.
"""

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from badges.tests.test_admin import room_with_unread, tamper
from chat.seeding import DEMO_STAFF_PASSWORD, DEMO_STAFF_USERNAME, seed_demo_staff
from chat.tests.browser.stack import CHROMIUM, CHROMIUM_ARGS, browser_missing
from chat.tests.helpers import make_user
from chat.unread import room_badge

SCREENSHOT = Path(settings.BASE_DIR) / ".run" / "artifacts" / "admin.png"
DOCS_SCREENSHOT = Path(settings.BASE_DIR) / "docs" / "admin.png"


pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        browser_missing() is not None, reason=f"browser test skipped: {browser_missing()}"
    ),
]


@pytest.mark.django_db(transaction=True)
def test_staff_sees_the_membership_counts_and_their_drift(live_server: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    seed_demo_staff()
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    general = room_with_unread("general", [alice, bob, carol], 3)
    room_with_unread("random", [bob, alice], 1)
    for user in (alice, bob, carol):
        room_badge(user.pk, general.pk)
    tamper(carol.pk, general.pk, extra_ids=[900_001, 900_002])  # Redis now lies about carol

    def look(url: str) -> None:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 560})
                page.goto(f"{url}/admin/login/?next=/admin/chat/membership/")
                page.get_by_label("Username").fill(DEMO_STAFF_USERNAME)
                page.get_by_label("Password").fill(DEMO_STAFF_PASSWORD)
                page.get_by_role("button", name="Log in").click()
                heading = page.get_by_role("heading", name="Select membership to change")
                expect(heading).to_be_visible()
                page.get_by_role("button", name="Toggle navigation").click()  # room for columns
                expect(page.get_by_text("5 ≠")).to_be_visible()  # carol's drifted count, marked
                expect(page.get_by_role("link", name="drifted from the database")).to_be_visible()
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
            finally:
                browser.close()

    with ThreadPoolExecutor(max_workers=1) as browser_thread:
        browser_thread.submit(look, live_server.url).result(timeout=120)
    assert SCREENSHOT.stat().st_size > 10_000
    if os.environ.get("CHAT_UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(SCREENSHOT, DOCS_SCREENSHOT)
