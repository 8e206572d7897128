"""The web page in headless Chromium against the real stack (daphne, Redis, the database).

Each test makes its users and rooms in the test database, which the daphne subprocess shares,
and signs its browser contexts in; messages come from a page or from `message_send` in this
process, which reaches the pages through Redis like any other server process's would.
"""

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password

from chat.events import user_group
from chat.models import Message
from chat.services import message_send, room_add_member
from chat.tests.browser.conftest import Browsing
from chat.tests.helpers import PATIENCE_S, make_room, make_user
from chatproject.fanout import publish

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips every test here and says how to enable them
    expect = None  # type: ignore[assignment]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT_MS = int(PATIENCE_S * 1000)  # a guard against hanging, as every wait in the tests


def room_button(page: Any, name: str, unread: int | None = None) -> Any:
    """The room's button in the list; `unread` pins its badge (0: none)."""
    if unread is None:
        pattern = rf"^{re.escape(name)}, "
    elif unread == 0:
        pattern = rf"^{re.escape(name)}, no unread"
    else:
        pattern = rf"^{re.escape(name)}, {unread} unread"
    return page.get_by_role("button", name=re.compile(pattern))


def say(sender: Any, room: Any, text: str) -> int:
    sent = message_send(
        sender_id=sender.pk, room_id=room.pk, body=text, client_message_id=f"t-{text}"
    )
    return sent.message.pk


def test_a_message_raises_the_other_users_badge_and_title(
    browsing: Browsing, record_latency: Any
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    make_room("general", [alice, bob])
    random = make_room("random", [alice, bob])
    # Alice signs in through the login form, so it needs a hash the server process knows.
    alice.password = make_password("alice-pw-1", hasher=PBKDF2PasswordHasher())
    alice.save(update_fields=["password"])

    alice_page = browsing.watch(
        browsing.browser.new_context(base_url=browsing.live.base_url).new_page()
    )
    browsing.contexts.append(alice_page.context)
    alice_page.goto("/")
    expect(alice_page).to_have_url(re.compile(r"/login/\?next=/$"))
    alice_page.get_by_label("Username").fill("alice")
    alice_page.get_by_label("Password").fill("alice-pw-1")
    alice_page.get_by_role("button", name="Sign in").click()
    expect(alice_page.get_by_text("Signed in as alice")).to_be_visible()

    bob_page = browsing.open_page(browsing.context_for(bob))
    expect(bob_page).to_have_title("Chat")
    expect(room_button(bob_page, "general", 0)).to_be_visible()

    room_button(alice_page, "general").click()
    box = alice_page.get_by_label("Message general")
    box.fill("hello bob")
    started = time.monotonic()
    box.press("Enter")
    expect(bob_page).to_have_title("(1) Chat", timeout=WAIT_MS)
    elapsed = time.monotonic() - started
    expect(room_button(bob_page, "general", 1)).to_be_visible(timeout=WAIT_MS)
    # Measured and printed in the summary, not asserted: on a shared 2-core machine a time
    # limit here fails with the machine's load, not with the code. The latency claim is the
    # benchmark's (bench/README.md), which measures it under load against a baseline.
    record_latency("badge latency (Enter to the other tab's title)", elapsed)

    # Sorted by latest activity, the last message shown, announced to screen readers.
    expect(bob_page.get_by_role("listitem").first).to_contain_text("general")
    expect(room_button(bob_page, "general", 1)).to_contain_text("alice: hello bob")
    expect(bob_page.locator("[aria-live]")).to_have_text("New message in general from alice")
    expect(alice_page.get_by_role("list", name="Messages in general")).to_contain_text("hello bob")
    link = bob_page.locator('link[rel="icon"]')
    expect(link).to_have_attribute("data-count", "1")
    expect(link).to_have_attribute("href", re.compile(r"^data:image/png"))
    browsing.screenshot(bob_page, "badge")

    room_button(bob_page, "general", 1).click()
    expect(bob_page).to_have_title("Chat")
    expect(bob_page.get_by_role("list", name="Messages in general")).to_contain_text("hello bob")

    # Read by keyboard only: Tab to the room, Enter, type, Enter.
    bob_page.get_by_label("Message general").fill("hi alice")
    bob_page.keyboard.press("Enter")
    expect(alice_page.get_by_role("list", name="Messages in general")).to_contain_text("hi alice")

    # Activity elsewhere while a room is open: the picture in the README (docs/page.png).
    say(alice, random, "lunch at noon?")
    expect(bob_page).to_have_title("(1) Chat", timeout=WAIT_MS)
    expect(room_button(bob_page, "random", 1)).to_be_visible()
    expect(bob_page.get_by_role("listitem").first).to_contain_text("random")
    picture = browsing.screenshot(bob_page, "page")
    if os.environ.get("CHAT_UPDATE_DOCS_SCREENSHOT"):
        (Path(settings.BASE_DIR) / "docs").mkdir(exist_ok=True)
        shutil.copy(picture, Path(settings.BASE_DIR) / "docs" / "page.png")
    assert browsing.errors == []


def test_reading_in_one_tab_clears_the_badge_in_the_other(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    make_room("quiet", [alice, bob])
    say(alice, general, "one")
    say(alice, general, "two")

    context = browsing.context_for(bob)
    first, second = browsing.open_page(context), browsing.open_page(context)
    for tab in (first, second):
        expect(tab).to_have_title("(2) Chat")
        expect(room_button(tab, "general", 2)).to_be_visible()

    room_button(first, "general", 2).click()
    for tab in (first, second):
        expect(tab).to_have_title("Chat", timeout=WAIT_MS)
        expect(room_button(tab, "general", 0)).to_be_visible()
    expect(first.locator('link[rel="icon"]')).to_have_attribute("data-count", "0")
    browsing.screenshot(second, "other-tab")
    assert browsing.errors == []


def test_the_page_reconnects_after_a_server_restart_and_loses_nothing(
    browsing: Browsing,
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    general = make_room("general", [alice, bob, carol])
    alice_page = browsing.open_page(browsing.context_for(alice))
    bob_page = browsing.open_page(browsing.context_for(bob))
    room_button(alice_page, "general").click()
    expect(alice_page.get_by_label("Message general")).to_be_focused()

    browsing.live.stop()
    for page in (alice_page, bob_page):
        expect(page.get_by_role("status")).to_contain_text("Offline", timeout=WAIT_MS)
    browsing.screenshot(bob_page, "offline")

    # Written while the server is down: queued by the page, sent once it is back.
    alice_page.get_by_label("Message general").fill("sent while offline")
    alice_page.keyboard.press("Enter")
    messages = alice_page.get_by_role("list", name="Messages in general")
    expect(messages).to_contain_text("sending…")
    # Meanwhile another process saves a message for bob.
    say(carol, general, "from carol")

    browsing.live.start()
    expect(alice_page.get_by_role("status")).to_have_text("Back online", timeout=WAIT_MS)
    bob_page.wait_for_function("() => window.chatDebug.socket.isOpen", timeout=WAIT_MS)
    expect(bob_page).to_have_title("(2) Chat", timeout=WAIT_MS)
    expect(room_button(bob_page, "general", 2)).to_be_visible()
    expect(messages.get_by_role("listitem").filter(has_text="sent while offline")).to_have_count(1)
    expect(messages).not_to_contain_text("sending…")
    expect(messages).to_contain_text("from carol")
    assert Message.objects.filter(body="sent while offline").count() == 1
    browsing.screenshot(alice_page, "back-online")

    # A retried send with the same clientMessageId changes nothing.
    client_id = Message.objects.get(body="sent while offline").client_message_id
    retry = {
        "type": "send-message",
        "roomId": general.pk,
        "message": "sent while offline",
        "clientMessageId": client_id,
    }
    alice_page.evaluate("(frame) => window.chatDebug.socket.send(frame)", retry)
    expect(bob_page).to_have_title("(2) Chat")
    assert Message.objects.filter(body="sent while offline").count() == 1
    assert browsing.errors == []


LOSE_THE_FIRST_REPLY = """() => {
    const socket = window.chatDebug.socket;
    const receive = socket.receive.bind(socket);
    socket.receive = (data) => {
        if (window.lostReply === undefined && data.includes('"message-sent"')) {
            window.lostReply = JSON.parse(data);
            socket.ws.close();  // the connection drops before the reply is read
            return;
        }
        receive(data);
    };
}"""


def test_a_send_whose_reply_was_lost_is_retried_and_saved_once(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    make_room("general", [alice, bob])
    page = browsing.open_page(browsing.context_for(alice))
    bob_page = browsing.open_page(browsing.context_for(bob))
    room_button(page, "general").click()
    page.evaluate(LOSE_THE_FIRST_REPLY)

    page.get_by_label("Message general").fill("only once")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.lostReply !== undefined", timeout=WAIT_MS)
    messages = page.get_by_role("list", name="Messages in general")
    expect(messages).not_to_contain_text("sending…", timeout=WAIT_MS)
    expect(messages.get_by_role("listitem").filter(has_text="only once")).to_have_count(1)
    lost = page.evaluate("() => window.lostReply")
    saved = Message.objects.get(body="only once")  # one row, whatever was retried
    assert lost["messageId"] == saved.pk and lost["clientMessageId"] == saved.client_message_id
    expect(bob_page).to_have_title("(1) Chat", timeout=WAIT_MS)
    assert browsing.errors == []


def test_a_user_never_sees_a_room_they_are_not_in(browsing: Browsing) -> None:
    alice, mallory = make_user("alice"), make_user("mallory")
    make_room("general", [alice, mallory])
    secret = make_room("secret", [alice])
    say(alice, secret, "for alice only")

    # Even asked for by address, the room does not open.
    page = browsing.watch(browsing.context_for(mallory).new_page())
    page.goto(f"/#room-{secret.pk}")
    page.wait_for_function("() => window.chatDebug && window.chatDebug.badges.version >= 0")
    expect(room_button(page, "general")).to_be_visible()
    expect(room_button(page, "secret")).to_have_count(0)
    expect(page.get_by_role("heading", name="Pick a room")).to_be_visible()
    answer = page.request.get(f"/api/rooms/{secret.pk}/messages")
    assert answer.status == 403 and answer.json()["error"] == "not_a_member"

    say(alice, secret, "still secret")
    page.evaluate(
        """(roomId) => window.chatDebug.socket.send({type: "join-room", roomId})""", secret.pk
    )
    expect(page).to_have_title("Chat")
    expect(page.get_by_text("secret")).to_have_count(0)
    expect(page.get_by_text("still secret")).to_have_count(0)
    assert browsing.errors == []


def test_the_page_survives_malformed_frames(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    page = browsing.open_page(browsing.context_for(bob))

    for raw in ["not json{", "[1, 2]", "null", '{"type": 7}', '{"type": "chat-message"}']:
        page.evaluate("(raw) => window.chatDebug.receive(raw)", raw)
    # And through the server, as a broken server process would send them.
    publish(
        [
            (
                user_group(bob.pk),
                {
                    "type": "chat.frames",
                    "frames": [
                        {"type": "no-such-frame", "x": 1},
                        {"type": "chat-room-updated", "roomId": "general"},
                        {"type": "total-unread-count-updated", "version": 1},
                        {"type": "unread-state", "rooms": "many"},
                        {"type": "chat-message", "roomId": general.pk, "message": None},
                    ],
                },
            )
        ]
    )
    say(alice, general, "still alive")
    expect(page).to_have_title("(1) Chat", timeout=WAIT_MS)
    expect(room_button(page, "general", 1)).to_contain_text("alice: still alive")
    assert any("no-such-frame" in w or "unknown type" in w for w in browsing.warnings)
    assert any("not JSON" in w for w in browsing.warnings)
    assert browsing.errors == []


def test_older_messages_load_on_scroll_on_a_phone_sized_screen(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    for n in range(45):
        say(alice, general, f"message {n:02d}")
    context = browsing.context_for(bob, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = browsing.open_page(context)
    room_button(page, "general", 45).click()
    messages = page.get_by_role("list", name="Messages in general")
    expect(messages.get_by_role("listitem")).to_have_count(30)
    expect(messages).to_contain_text("message 44")
    messages.evaluate("(list) => { list.scrollTop = 0; }")
    expect(messages.get_by_role("listitem")).to_have_count(45, timeout=WAIT_MS)
    expect(messages.get_by_role("listitem").first).to_contain_text("message 00")
    expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()
    browsing.screenshot(page, "phone")
    assert browsing.errors == []


HOLD_THE_SOCKET_CLOSED = """() => {
    const socket = window.chatDebug.socket;
    socket.realConnect = socket.connect;
    socket.connect = () => {};  // the reconnect timer fires into nothing: a long outage
    socket.ws.close();
}"""
LET_IT_RECONNECT = """() => {
    const socket = window.chatDebug.socket;
    socket.connect = socket.realConnect;
    socket.connect();
}"""


def test_after_a_long_outage_the_room_shows_every_missed_message_and_new_rooms(
    browsing: Browsing,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    say(bob, general, "before the outage")
    page = browsing.open_page(browsing.context_for(alice))
    room_button(page, "general").click()
    messages = page.get_by_role("list", name="Messages in general")
    expect(messages.get_by_role("listitem")).to_have_count(1)

    page.evaluate(HOLD_THE_SOCKET_CLOSED)
    expect(page.get_by_role("status")).to_contain_text("Offline", timeout=WAIT_MS)
    # More than two pages of history (30 a page) while the page hears nothing; and a room
    # alice is added to, which only a fresh snapshot tells the page about.
    for n in range(75):
        say(bob, general, f"missed {n:02d}")
    make_room("added later", [alice, bob])
    page.evaluate(LET_IT_RECONNECT)

    expect(page.get_by_role("status")).to_have_text("Back online", timeout=WAIT_MS)
    expect(messages.get_by_role("listitem")).to_have_count(76, timeout=WAIT_MS)
    expect(messages.get_by_role("listitem").first).to_contain_text("before the outage")
    expect(messages.get_by_role("listitem").last).to_contain_text("missed 74")
    expect(room_button(page, "added later")).to_be_visible(timeout=WAIT_MS)
    assert browsing.errors == []


def test_a_room_the_user_is_added_to_appears_without_a_reload(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    make_room("general", [alice, bob])
    page = browsing.open_page(browsing.context_for(alice))
    expect(room_button(page, "general")).to_be_visible()

    make_room("new room", [alice, bob])
    expect(room_button(page, "new room")).to_be_visible(timeout=WAIT_MS)
    assert browsing.errors == []


def test_a_member_who_joined_after_the_page_loaded_is_shown_by_name(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    page = browsing.open_page(browsing.context_for(alice))
    room_button(page, "general").click()
    messages = page.get_by_role("list", name="Messages in general")

    carol = make_user("carol")
    room_add_member(room_id=general.pk, user_id=carol.pk)
    say(carol, general, "hello, I am new")

    item = messages.get_by_role("listitem").filter(has_text="hello, I am new")
    expect(item).to_contain_text("carol", timeout=WAIT_MS)
    expect(item).not_to_contain_text("user ")
    expect(room_button(page, "general")).to_have_accessible_name(
        re.compile(r"carol: hello, I am new$"), timeout=WAIT_MS
    )
    assert browsing.errors == []


PUBLIC_KEY = (  # an uncompressed P-256 point (RFC 8291's example), as the VAPID key endpoint gives
    "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
)
# Headless Chromium has no push service to subscribe with, so the browser's subscribe() is
# replaced by one that answers like a real subscription; everything around it is real.
FAKE_SUBSCRIBE = """
PushManager.prototype.subscribe = async function (options) {
  window.subscribedWith = options;
  return { toJSON: () => ({
    endpoint: "https://push.example.com/send/page-test",
    keys: { p256dh: "PUBLIC_KEY", auth: "tBHItJI5svbpez7KI4CCXg" },
  }) };
};
""".replace("PUBLIC_KEY", PUBLIC_KEY)


def test_notifications_opt_in_and_the_service_worker(browsing: Browsing) -> None:
    from notifications.models import Device

    alice = make_user("alice")
    make_room("general", [alice])
    context = browsing.context_for(alice)
    context.grant_permissions(["notifications"])
    context.add_init_script(FAKE_SUBSCRIBE)

    # No VAPID key on the server: no button.
    context.route("**/api/push/vapid-public-key", lambda route: route.fulfill(status=404))
    page = browsing.open_page(context)
    page.wait_for_function("() => window.chatDebug.push !== undefined")
    page.evaluate("() => window.chatDebug.push")  # the set-up has finished
    expect(room_button(page, "general")).to_be_visible()
    expect(page.get_by_role("button", name="Enable notifications")).to_be_hidden()
    page.close()

    context.unroute("**/api/push/vapid-public-key")
    context.route(
        "**/api/push/vapid-public-key",
        lambda route: route.fulfill(json={"publicKey": PUBLIC_KEY}),
    )
    page = browsing.open_page(context)
    enable = page.get_by_role("button", name="Enable notifications")
    enable.click()
    expect(enable).to_be_hidden(timeout=WAIT_MS)
    device = Device.objects.get(user=alice)
    assert device.address == "https://push.example.com/send/page-test"
    options = page.evaluate(
        "() => ({visible: window.subscribedWith.userVisibleOnly,"
        " keyBytes: window.subscribedWith.applicationServerKey.length})"
    )
    assert options == {"visible": True, "keyBytes": 65}

    # A push as the worker sends it, delivered to the service worker through DevTools.
    page.evaluate("() => navigator.serviceWorker.ready")
    cdp = context.new_cdp_session(page)
    registrations: list[str] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.extend(r["registrationId"] for r in event["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + WAIT_MS / 1000
    while not registrations and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert registrations, "the service worker did not register"
    payload = {
        "type": "chat-message",
        "roomId": 7,
        "messageId": 1,
        "title": "bob in general",
        "body": "hello",
        "badge": 3,
    }
    shown = """async () => (await (await navigator.serviceWorker.ready).getNotifications())
        .map((n) => ({title: n.title, body: n.body, roomId: n.data.roomId}))"""
    notifications: list[Any] = []
    # A push delivered while the worker is still activating can be dropped by DevTools; the
    # notification's tag is the room's, so delivering it again replaces rather than adds.
    for _ in range(3):
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": browsing.live.base_url,
                "registrationId": registrations[0],
                "data": json.dumps(payload),
            },
        )
        deadline = time.monotonic() + 5
        while not notifications and time.monotonic() < deadline:
            notifications = page.evaluate(shown)
            if not notifications:
                page.wait_for_timeout(100)
        if notifications:
            break
    assert notifications == [{"title": "bob in general", "body": "hello", "roomId": 7}]
    assert browsing.errors == []


def test_reconnect_waits_grow_exponentially_to_a_cap_with_jitter(browsing: Browsing) -> None:
    page = browsing.anonymous_page()
    page.goto("/login/")
    waits = page.evaluate(
        """async () => {
            const { reconnectDelay } = await import("/static/chat/socket.js");
            return [0, 1, 2, 3, 4, 10, 50].map((attempt) => [
                reconnectDelay(attempt, () => 0),
                reconnectDelay(attempt, () => 1),
            ]);
        }"""
    )
    # Each wait lies between half and all of min(5 s, 0.5 s * 2^attempt).
    assert waits == [
        [250, 500],
        [500, 1000],
        [1000, 2000],
        [2000, 4000],
        [2500, 5000],
        [2500, 5000],
        [2500, 5000],
    ]


def test_the_page_asks_for_combined_frames_and_applies_them(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    page = browsing.open_page(browsing.context_for(bob))
    assert page.evaluate("() => window.chatDebug.socket.url").endswith("/ws/chat/?frames=combined")
    say(alice, general, "one")
    say(alice, general, "two")
    # Each message came as one combined frame carrying the room's count and the total.
    expect(page).to_have_title("(2) Chat", timeout=WAIT_MS)
    expect(room_button(page, "general", 2)).to_contain_text("alice: two")
    parts = page.evaluate(
        """async () => {
            const { splitCombined } = await import("/static/chat/socket.js");
            return splitCombined({type: "chat-room-updated", roomId: 1, unreadCount: 2,
                mentionCount: 1, totalUnreadCount: 5, version: 9,
                combines: ["chat-room-updated", "total-unread-count-updated"]});
        }"""
    )
    fields = {"roomId": 1, "unreadCount": 2, "mentionCount": 1, "totalUnreadCount": 5, "version": 9}
    assert parts == [
        {**fields, "type": "chat-room-updated"},
        {**fields, "type": "total-unread-count-updated"},
    ]
    assert browsing.errors == []


def test_counts_follow_the_newest_version_not_the_latest_arrival(browsing: Browsing) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    last = say(alice, general, "one")
    # open_page lets the lanes publish "one" first: no frame of the server's races those below.
    page = browsing.open_page(browsing.context_for(bob))
    expect(page).to_have_title("(1) Chat")
    version = page.evaluate("() => window.chatDebug.badges.version")

    def receive(frame: dict[str, Any]) -> None:
        page.evaluate("(raw) => window.chatDebug.receive(raw)", json.dumps(frame))

    def total_frame(version: int, total: int) -> dict[str, Any]:
        return {
            "type": "total-unread-count-updated",
            "totalUnreadCount": total,
            "roomId": general.pk,
            "roomUnreadCount": total,
            "version": version,
        }

    def room_frame(version: int, count: int) -> dict[str, Any]:
        last_message = {
            "id": last,
            "senderId": alice.pk,
            "body": "one",
            "createdAt": "2026-01-01T00:00:00Z",
        }
        return {
            "type": "chat-room-updated",
            "roomId": general.pk,
            "lastMessage": last_message,
            "unreadCount": count,
            "version": version,
        }

    def snapshot(version: int, total: int) -> dict[str, Any]:
        rooms = [{"roomId": general.pk, "unreadCount": total, "lastMessageId": last}]
        return {
            "type": "unread-state",
            "totalUnreadCount": total,
            "version": version,
            "rooms": rooms,
        }

    receive(total_frame(version - 1, 9))  # older than what the page shows
    receive(total_frame(version, 8))  # not newer either
    receive(snapshot(version - 5, 7))
    assert page.title() == "(1) Chat"
    receive(snapshot(version + 1, 4))  # a fresh snapshot, sent at any time, wins
    expect(page).to_have_title("(4) Chat")
    expect(room_button(page, "general", 4)).to_be_visible()
    # A room's count read before that snapshot, arriving after it (a lane's frame can): once
    # the cause of "1 unread" where the snapshot said 4.
    receive(room_frame(version, 1))
    expect(room_button(page, "general", 4)).to_be_visible()
    # One of the snapshot's own version applies (the server would state the same count there;
    # a different one shows it was applied).
    receive(room_frame(version + 1, 3))
    expect(room_button(page, "general", 3)).to_be_visible()
    assert page.title() == "(4) Chat"

    # The server's next absolute total replaces whatever the page showed.
    say(alice, general, "two")
    expect(page).to_have_title("(2) Chat", timeout=WAIT_MS)
    expect(room_button(page, "general", 2)).to_be_visible()
    assert browsing.errors == []


def test_a_deactivated_user_is_sent_to_the_sign_in_page(browsing: Browsing) -> None:
    from chat.revocation import user_deactivate

    alice = make_user("alice")
    make_room("general", [alice])
    page = browsing.open_page(browsing.context_for(alice))

    user_deactivate(user_ids=[alice.pk])

    # Closed with 4003: the page stops reconnecting and asks for a sign-in instead.
    expect(page).to_have_url(re.compile(r"/login/\?next=(/|%2F)$"), timeout=WAIT_MS)
    expect(page.get_by_label("Username")).to_be_visible()
    assert browsing.errors == []
