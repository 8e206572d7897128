"""The page's side of mentions, notification levels and edits (shared/PROTOCOL.md, "Badges as
chat products define them"), in headless Chromium against the real stack (see test_page.py).

As in test_page_badges.py, every count asserted is the server's: the page only shows what its
frames say.
"""

import time
from typing import Any

import pytest

from chat import presence
from chat.tests.browser.conftest import Browsing
from chat.tests.browser.test_page import room_button, say
from chat.tests.browser.test_page_badges import csrf_token, message, messages_of, room_with
from chat.tests.helpers import make_room, make_user

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips every test here and says how to enable them
    expect = None  # type: ignore[assignment]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def no_longer_viewing(user: Any, room: Any) -> None:
    deadline = time.monotonic() + 30
    while user.pk in presence.viewer_ids(room.pk):
        assert time.monotonic() < deadline, f"{user} still views {room}"
        time.sleep(0.02)


def mention_badge(page: Any, room: str) -> Any:
    return room_button(page, room).locator(".badge.mention")


def test_a_mention_shows_on_the_mentioned_users_page_until_they_open_the_room(
    browsing: Browsing,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    make_room("random", [alice, bob])
    page = browsing.open_page(browsing.context_for(bob))
    alice_page = browsing.open_page(browsing.context_for(alice))
    rooms_asked: list[str] = []
    page.on("request", lambda request: rooms_asked.append(request.url))

    say(alice, general, "morning all")
    say(alice, general, "@bob can you look at this?")
    expect(room_with(page, "general", "2 unread, 1 mention, alice: @bob")).to_be_visible()
    expect(mention_badge(page, "general")).to_have_text("@1")
    expect(page).to_have_title("(2 · @1) Chat")
    # A message's own frames say all: the list is not asked for again.
    assert [url for url in rooms_asked if url.endswith("/api/rooms")] == []
    # Alice sent it: nothing of hers counts, and the list shows her no mention.
    expect(room_button(alice_page, "general", 0)).to_be_visible()
    expect(mention_badge(alice_page, "general")).to_have_count(0)
    expect(alice_page).to_have_title("Chat")

    room_button(page, "general").click()
    expect(message(page, "general", "can you look at this?")).to_have_count(1)
    expect(room_button(page, "general", 0)).to_be_visible()
    expect(mention_badge(page, "general")).to_have_count(0)
    expect(page).to_have_title("Chat")
    assert browsing.errors == []


def test_a_room_at_level_none_leaves_the_total_on_every_device(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    random = make_room("random", [alice, bob])
    say(alice, general, "g1")
    say(alice, random, "r1")
    context = browsing.context_for(bob)
    page, phone = browsing.open_page(context), browsing.open_page(context)
    for tab in (page, phone):
        expect(tab).to_have_title("(2) Chat")

    # The page's control, on the open room (which viewing has read), then the room closed.
    room_button(page, "random").click()
    level = page.get_by_label("Notifications for random")
    expect(level).to_have_value("all")
    with page.expect_response(lambda answer: answer.url.endswith("/notifications")) as put:
        level.select_option("none")
    assert put.value.status == 200
    assert put.value.json() == {"roomId": random.pk, "level": "none"}
    expect(level).to_have_value("none")
    level.blur()  # Escape is the page's, not the select's
    page.keyboard.press("Escape")
    expect(page.get_by_role("heading", name="Pick a room")).to_be_visible()
    expect(room_with(page, "random", "no unread, muted")).to_be_visible()
    # The server has taken bob out of the room's viewers: what comes next is unread for him.
    no_longer_viewing(bob, random)

    # Its new messages count in the room, not in the total, on both devices.
    say(alice, random, "r2")
    say(alice, random, "r3")
    expect(room_with(page, "random", "2 unread, muted")).to_be_visible()
    # The phone shows the counts, and learns the level only from the server's next rooms list:
    # the frames of a level change that moved no total do not carry it.
    expect(room_button(phone, "random", 2)).to_be_visible()
    for tab in (page, phone):
        expect(tab).to_have_title("(1) Chat")

    # Another device of bob's (an app, through the API) mutes general: the total drops at
    # once on both pages, its unread message still shown in the room. A total that moved while
    # its room's counts did not is a level change: the pages read the levels again.
    answer = context.request.put(
        f"/api/rooms/{general.pk}/notifications",
        data={"level": "none"},
        headers={"X-CSRFToken": csrf_token(context)},
    )
    assert answer.status == 200
    assert answer.json() == {"roomId": general.pk, "level": "none"}
    for tab in (page, phone):
        expect(tab).to_have_title("Chat")
        expect(room_with(tab, "general", "1 unread, muted")).to_be_visible()

    expect(room_with(phone, "random", "2 unread, muted")).to_be_visible()
    phone.reload()
    expect(room_with(phone, "general", "1 unread, muted")).to_be_visible()
    expect(room_with(phone, "random", "2 unread, muted")).to_be_visible()
    assert browsing.errors == []


def test_an_edit_shows_on_the_pages_viewing_the_room_and_moves_mentions(
    browsing: Browsing,
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    make_room("general", [alice, bob, carol])
    writer = browsing.open_page(browsing.context_for(alice))
    reader = browsing.open_page(browsing.context_for(bob))
    away = browsing.open_page(browsing.context_for(carol))  # not viewing: counts only
    for tab in (writer, reader):
        room_button(tab, "general").click()
        expect(messages_of(tab, "general")).to_be_visible()

    writer.get_by_label("Message general").fill("lunch at noon?")
    writer.keyboard.press("Enter")
    expect(message(reader, "general", "lunch at noon?")).to_have_count(1)
    expect(room_with(away, "general", "1 unread, alice: lunch")).to_be_visible()
    # Only the sender may edit it.
    expect(message(reader, "general", "lunch").get_by_role("button", name="Edit")).to_have_count(0)

    message(writer, "general", "lunch at noon?").get_by_role("button", name="Edit").click()
    box = writer.get_by_role("textbox", name="Edit message")
    expect(box).to_have_value("lunch at noon?")
    box.fill("lunch at one? @carol")
    box.press("Enter")
    for tab in (writer, reader):
        edited = message(tab, "general", "lunch at one? @carol")
        expect(edited).to_have_count(1)
        expect(edited).to_contain_text("(edited)")
        expect(messages_of(tab, "general")).not_to_contain_text("noon")
    expect(writer.get_by_role("textbox", name="Edit message")).to_have_count(0)
    # The mention it gained counts for carol, for whom it is unread.
    expect(room_with(away, "general", "1 unread, 1 mention")).to_be_visible()
    expect(away).to_have_title("(1 · @1) Chat")

    # History says it was edited too.
    reader.reload()
    room_button(reader, "general").click()
    expect(message(reader, "general", "lunch at one?")).to_contain_text("(edited)")
    assert browsing.errors == []
