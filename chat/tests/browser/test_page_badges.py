"""The page's side of issue 15 (shared/PROTOCOL.md, "Badges as chat products define them") as
far as the server has it: deleting one's own messages, mark unread and leaving a room, in
headless Chromium against the real stack (see test_page.py).

Every count asserted here is the server's: the page shows what the frames say, so each
assertion is also one on the server's arithmetic as a user sees it.
"""

import re
from typing import Any

import pytest

from chat.tests.browser.conftest import Browsing
from chat.tests.browser.test_page import room_button, say
from chat.tests.helpers import make_room, make_user

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips every test here and says how to enable them
    expect = None  # type: ignore[assignment]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def room_with(page: Any, name: str, label: str) -> Any:
    """The room's button whose accessible name, after the room's, starts with `label`."""
    return page.get_by_role("button", name=re.compile(rf"^{re.escape(name)}, {re.escape(label)}"))


def messages_of(page: Any, room: str) -> Any:
    return page.get_by_role("list", name=f"Messages in {room}")


def message(page: Any, room: str, text: str) -> Any:
    return messages_of(page, room).get_by_role("listitem").filter(has_text=text)


def accept_dialogs(page: Any) -> None:
    """Deleting and leaving ask first (window.confirm); the test says yes."""
    page.on("dialog", lambda dialog: dialog.accept())


def test_deleting_ones_message_shows_on_every_device_and_in_the_counts(
    browsing: Browsing,
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    make_room("general", [alice, bob, carol])
    alice_context = browsing.context_for(alice)
    writer, writer_phone = browsing.open_page(alice_context), browsing.open_page(alice_context)
    reader = browsing.open_page(browsing.context_for(bob))
    away = browsing.open_page(browsing.context_for(carol))  # not viewing: counts only
    for tab in (writer, writer_phone, reader):
        room_button(tab, "general").click()
        expect(messages_of(tab, "general")).to_be_visible()

    writer.get_by_label("Message general").fill("oops, wrong room")
    writer.keyboard.press("Enter")
    expect(message(reader, "general", "oops, wrong room")).to_have_count(1)
    expect(message(writer_phone, "general", "oops, wrong room")).to_have_count(1)
    expect(room_with(away, "general", "1 unread, alice: oops, wrong room")).to_be_visible()
    expect(away).to_have_title("(1) Chat")
    # Only the sender may delete it: bob's copy has no Delete, only Mark unread.
    theirs = message(reader, "general", "oops, wrong room")
    expect(theirs.get_by_role("button", name="Delete")).to_have_count(0)
    expect(theirs.get_by_role("button", name="Mark unread")).to_have_count(1)

    accept_dialogs(writer_phone)
    message(writer_phone, "general", "oops").get_by_role("button", name="Delete").click()
    for tab in (writer, writer_phone, reader):
        expect(message(tab, "general", "Message deleted")).to_have_count(1)
        expect(messages_of(tab, "general")).not_to_contain_text("oops")
    expect(room_button(away, "general", 0)).to_be_visible()
    expect(away).to_have_title("Chat")

    # History no longer lists it.
    reader.reload()
    room_button(reader, "general").click()
    expect(messages_of(reader, "general").get_by_role("listitem")).to_have_count(0)
    assert browsing.errors == []


def test_mark_unread_from_a_message_counts_it_and_what_follows_again(
    browsing: Browsing,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    for text in ("first", "second", "third"):
        say(alice, general, text)
    context = browsing.context_for(bob)
    page, other_device = browsing.open_page(context), browsing.open_page(context)
    room_button(page, "general", 3).click()
    for tab in (page, other_device):
        expect(tab).to_have_title("Chat")

    message(page, "general", "second").get_by_role("button", name="Mark unread").click()
    # The room closes (viewing it would read it again) and both devices count from "second".
    expect(page.get_by_role("heading", name="Pick a room")).to_be_visible()
    for tab in (page, other_device):
        expect(room_with(tab, "general", "2 unread, alice: third")).to_be_visible()
        expect(tab).to_have_title("(2) Chat")
    assert browsing.errors == []


def test_leaving_a_room_takes_it_out_of_every_device(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    random = make_room("random", [alice, bob])
    quiet = make_room("quiet", [alice, bob])
    say(alice, general, "one")
    say(alice, general, "two")
    context = browsing.context_for(bob)
    page, other_device = browsing.open_page(context), browsing.open_page(context)
    for tab in (page, other_device):
        expect(tab).to_have_title("(2) Chat")

    # Left from another device (the API, as an app would): its counts leave the total at once.
    answer = context.request.delete(
        f"/api/rooms/{general.pk}/membership",
        headers={"X-CSRFToken": csrf_token(context)},
    )
    assert answer.status == 204
    for tab in (page, other_device):
        expect(tab).to_have_title("Chat")
        expect(room_button(tab, "general")).to_have_count(0)

    # Left from the page, while the other device has the room open.
    room_button(other_device, "random").click()
    room_button(page, "random").click()
    accept_dialogs(page)
    page.get_by_role("button", name="Leave random").click()
    for tab in (page, other_device):
        expect(room_button(tab, "random")).to_have_count(0)
        expect(tab.get_by_role("heading", name="Pick a room")).to_be_visible()

    # Its messages no longer reach bob; the next one of a room he is in does.
    say(alice, random, "anyone?")
    say(alice, quiet, "still here")
    for tab in (page, other_device):
        expect(room_button(tab, "quiet", 1)).to_be_visible()
        expect(tab).to_have_title("(1) Chat")
        expect(room_button(tab, "random")).to_have_count(0)
    assert browsing.errors == []


def csrf_token(context: Any) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
