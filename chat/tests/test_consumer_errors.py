"""Refused frames and refused handshakes of the WebSocket (shared/PROTOCOL.md).

Every refusal is one `error` frame whose `ref` echoes the frame's clientMessageId, else its
type; the connection stays usable (a ping still gets its pong) and nothing was saved.
"""

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django.utils import timezone

from chat import ratelimit
from chat.models import AuthToken, Membership, Message, Room
from chat.tests.helpers import (
    PATIENCE_S,
    Client,
    close_quietly,
    connect,
    connect_user,
    make_room,
    make_user,
    token_for,
)
from chatproject import lanes
from chatproject.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

Frame = dict[str, Any]
QUIET = 0.2  # seconds of silence that stand for "no frame is coming"
MISSING_ID = 987_654_321


@dataclass
class World:
    alice: Any
    bob: Any
    carol: Any  # in no room with the others
    general: Room  # alice and bob
    other: Room  # bob only
    message_id: int  # bob's message in general
    other_message_id: int  # bob's message in other


@database_sync_to_async
def _build_world() -> World:
    alice, bob, carol = (make_user(name) for name in ("alice", "bob", "carol"))
    general = make_room("general", [alice, bob])
    other = make_room("other", [bob])
    message = Message.objects.create(room=general, sender=bob, body="hello", client_message_id="b1")
    elsewhere = Message.objects.create(room=other, sender=bob, body="alone", client_message_id="b2")
    # Their frames must not reach the connections a test opens next.
    assert lanes.flush(PATIENCE_S)
    return World(alice, bob, carol, general, other, message.pk, elsewhere.pk)


@pytest.fixture
async def world() -> World:
    return await _build_world()


class Connections:
    """Opens clients for a test and closes them after it, pass or fail."""

    def __init__(self) -> None:
        self.clients: list[Client] = []

    async def open(self, user: Any) -> Client:
        client, _ = await connect_user(user)
        self.clients.append(client)
        return client

    def keep(self, client: Client) -> Client:
        self.clients.append(client)
        return client


@pytest.fixture
async def ws() -> AsyncIterator[Connections]:
    connections = Connections()
    yield connections
    await close_quietly(connections.clients)


@database_sync_to_async
def saved_state() -> tuple[list[Any], list[Any]]:
    """Every message and every read pointer: what a refused frame must leave untouched."""
    messages = list(Message.objects.order_by("pk").values_list("pk", "room_id", "body"))
    pointers = list(
        Membership.objects.order_by("pk").values_list("pk", "user_id", "last_read_message_id")
    )
    return messages, pointers


async def assert_usable(client: Client) -> None:
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}


async def assert_refused(client: Client, sent: Frame | str, code: str, ref: str | None) -> Frame:
    """Send a frame (or raw text), expect exactly its error, and prove the socket still works."""
    before = await saved_state()
    if isinstance(sent, str):
        await client.communicator.send_to(text_data=sent)
    else:
        await client.send(sent)
    error = await client.receive()
    assert set(error) == {"type", "code", "message", "ref"}, error
    assert (error["type"], error["code"], error["ref"]) == ("error", code, ref), error
    assert isinstance(error["message"], str) and error["message"]
    await assert_usable(client)
    assert await client.nothing_more(QUIET)
    assert await saved_state() == before, "a refused frame changed the database"
    return error


# --- bad_json / bad_request / unknown_type --------------------------------------------------


async def test_bad_json(world: World, ws: Connections) -> None:
    client = await ws.open(world.alice)
    await assert_refused(client, '{"type": "ping"', "bad_json", None)
    await assert_refused(client, "not json at all", "bad_json", None)


@pytest.mark.parametrize(
    "raw",
    ["[1, 2]", '"ping"', "42", "null", "{}", '{"roomId": 1}', '{"type": 5}', '{"type": null}'],
    ids=["array", "string", "number", "null", "empty", "no-type", "int-type", "null-type"],
)
async def test_frame_without_a_string_type(world: World, ws: Connections, raw: str) -> None:
    client = await ws.open(world.alice)
    await assert_refused(client, raw, "bad_request", None)


@pytest.mark.parametrize(
    "frame",
    [
        {"roomId": 1, "message": "hi", "clientMessageId": "c1"},
        {"type": 5, "roomId": 1, "message": "hi", "clientMessageId": "c1"},
    ],
    ids=["no-type", "int-type"],
)
async def test_frame_without_type_echoes_its_client_message_id(
    world: World, ws: Connections, frame: Frame
) -> None:
    client = await ws.open(world.alice)
    await assert_refused(client, frame, "bad_request", "c1")


async def test_binary_frame_that_is_not_utf8_is_bad_json(world: World, ws: Connections) -> None:
    client = await ws.open(world.alice)
    before = await saved_state()

    await client.communicator.send_to(bytes_data=b"\xff\xfe{}")

    error = await client.receive()
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_json", None), error
    await assert_usable(client)
    assert await saved_state() == before


async def test_binary_frame_of_json_is_accepted(world: World, ws: Connections) -> None:
    client = await ws.open(world.alice)
    await client.communicator.send_to(bytes_data=b'{"type": "ping"}')
    assert await client.receive() == {"type": "pong"}


async def test_deeply_nested_json_is_refused_as_the_clients_fault(
    world: World, ws: Connections
) -> None:
    client = await ws.open(world.alice)

    await client.communicator.send_to(text_data="[" * 20_000 + "]" * 20_000)

    error = await client.receive()
    assert error["type"] == "error"
    assert error["code"] in ("bad_json", "bad_request"), error
    assert error["ref"] is None
    await assert_usable(client)


OUT_OF_RANGE = 2**63  # one past the largest id a 64-bit database column holds


@pytest.mark.parametrize(
    "frame, ref",
    [
        ({"type": "join-room", "roomId": OUT_OF_RANGE}, "join-room"),
        (
            {
                "type": "send-message",
                "roomId": OUT_OF_RANGE,
                "message": "x",
                "clientMessageId": "c1",
            },
            "c1",
        ),
        ({"type": "mark-read", "roomId": OUT_OF_RANGE, "messageId": 1}, "mark-read"),
    ],
    ids=["join", "send", "mark-read"],
)
async def test_room_id_out_of_range_is_refused_as_the_clients_fault(
    world: World, ws: Connections, frame: Frame, ref: str
) -> None:
    client = await ws.open(world.alice)

    await client.send(frame)

    error = await client.receive()
    assert (error["type"], error["ref"]) == ("error", ref), error
    assert error["code"] in ("not_found", "bad_request"), error
    await assert_usable(client)


FrameFor = Callable[[World], Frame]

BAD_REQUESTS: dict[str, tuple[FrameFor, str]] = {
    "join-no-room": (lambda w: {"type": "join-room"}, "join-room"),
    "join-string-room": (lambda w: {"type": "join-room", "roomId": str(w.general.pk)}, "join-room"),
    "join-bool-room": (lambda w: {"type": "join-room", "roomId": True}, "join-room"),
    "join-float-room": (lambda w: {"type": "join-room", "roomId": 1.5}, "join-room"),
    "join-null-room": (lambda w: {"type": "join-room", "roomId": None}, "join-room"),
    "leave-no-room": (lambda w: {"type": "leave-room"}, "leave-room"),
    "leave-string-room": (lambda w: {"type": "leave-room", "roomId": "1"}, "leave-room"),
    "send-no-room": (
        lambda w: {"type": "send-message", "message": "hi", "clientMessageId": "c1"},
        "c1",
    ),
    "send-string-room": (
        lambda w: {
            "type": "send-message",
            "roomId": str(w.general.pk),
            "message": "hi",
            "clientMessageId": "c1",
        },
        "c1",
    ),
    "send-bool-room": (
        lambda w: {
            "type": "send-message",
            "roomId": True,
            "message": "hi",
            "clientMessageId": "c1",
        },
        "c1",
    ),
    "send-int-message": (
        lambda w: {
            "type": "send-message",
            "roomId": w.general.pk,
            "message": 123,
            "clientMessageId": "c1",
        },
        "c1",
    ),
    "send-no-message": (
        lambda w: {"type": "send-message", "roomId": w.general.pk, "clientMessageId": "c1"},
        "c1",
    ),
    "send-empty-message": (
        lambda w: {
            "type": "send-message",
            "roomId": w.general.pk,
            "message": "",
            "clientMessageId": "c1",
        },
        "c1",
    ),
    "send-no-client-id": (
        lambda w: {"type": "send-message", "roomId": w.general.pk, "message": "hi"},
        "send-message",
    ),
    "send-int-client-id": (
        lambda w: {
            "type": "send-message",
            "roomId": w.general.pk,
            "message": "hi",
            "clientMessageId": 7,
        },
        "send-message",
    ),
    "read-no-message": (lambda w: {"type": "mark-read", "roomId": w.general.pk}, "mark-read"),
    "read-string-message": (
        lambda w: {"type": "mark-read", "roomId": w.general.pk, "messageId": str(w.message_id)},
        "mark-read",
    ),
    "read-bool-message": (
        lambda w: {"type": "mark-read", "roomId": w.general.pk, "messageId": True},
        "mark-read",
    ),
    "read-no-room": (lambda w: {"type": "mark-read", "messageId": w.message_id}, "mark-read"),
    # PostgreSQL cannot store NUL in text: refused alike on every database.
    "send-nul-in-message": (
        lambda w: {
            "type": "send-message",
            "roomId": w.general.pk,
            "message": "a\x00b",
            "clientMessageId": "c1",
        },
        "c1",
    ),
    "room-id-zero": (lambda w: {"type": "join-room", "roomId": 0}, "join-room"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
async def test_bad_request(world: World, ws: Connections, case: str) -> None:
    frame_for, ref = BAD_REQUESTS[case]
    client = await ws.open(world.alice)
    await assert_refused(client, frame_for(world), "bad_request", ref)


async def test_unknown_type(world: World, ws: Connections) -> None:
    client = await ws.open(world.alice)
    await assert_refused(client, {"type": "dance"}, "unknown_type", "dance")
    await assert_refused(client, {"type": "dance", "clientMessageId": "c9"}, "unknown_type", "c9")


# --- not_found / not_a_member ---------------------------------------------------------------


NOT_FOUND: dict[str, tuple[FrameFor, str]] = {
    "join-missing-room": (lambda w: {"type": "join-room", "roomId": MISSING_ID}, "join-room"),
    "send-missing-room": (
        lambda w: {
            "type": "send-message",
            "roomId": MISSING_ID,
            "message": "hi",
            "clientMessageId": "c1",
        },
        "c1",
    ),
    "read-missing-room": (
        lambda w: {"type": "mark-read", "roomId": MISSING_ID, "messageId": w.message_id},
        "mark-read",
    ),
    "read-message-of-another-room": (
        lambda w: {"type": "mark-read", "roomId": w.general.pk, "messageId": w.other_message_id},
        "mark-read",
    ),
    "read-missing-message": (
        lambda w: {"type": "mark-read", "roomId": w.general.pk, "messageId": MISSING_ID},
        "mark-read",
    ),
}


@pytest.mark.parametrize("case", list(NOT_FOUND), ids=list(NOT_FOUND))
async def test_not_found(world: World, ws: Connections, case: str) -> None:
    frame_for, ref = NOT_FOUND[case]
    client = await ws.open(world.bob)
    await assert_refused(client, frame_for(world), "not_found", ref)


async def test_not_a_member_and_gets_none_of_the_rooms_frames(
    world: World, ws: Connections
) -> None:
    carol = await ws.open(world.carol)
    alice = await ws.open(world.alice)
    room = world.general.pk

    await assert_refused(carol, {"type": "join-room", "roomId": room}, "not_a_member", "join-room")
    await assert_refused(
        carol,
        {"type": "send-message", "roomId": room, "message": "let me in", "clientMessageId": "c1"},
        "not_a_member",
        "c1",
    )
    await assert_refused(
        carol,
        {"type": "mark-read", "roomId": room, "messageId": world.message_id},
        "not_a_member",
        "mark-read",
    )

    assert await database_sync_to_async(Membership.objects.filter(user=world.carol).count)() == 0
    await alice.send(
        {"type": "send-message", "roomId": room, "message": "members only", "clientMessageId": "a1"}
    )
    assert (await alice.receive_type("message-sent"))["roomId"] == room
    await alice.receive_type("chat-room-updated")
    assert await carol.nothing_more(QUIET), "a non-member got a frame of the room"


async def test_client_message_id_reused_for_another_room_is_refused(
    world: World, ws: Connections
) -> None:
    bob = await ws.open(world.bob)
    # "b1" is the key of bob's message in general; a repeat must not answer for another room.
    frame = {
        "type": "send-message",
        "roomId": world.other.pk,
        "message": "x",
        "clientMessageId": "b1",
    }
    await assert_refused(bob, frame, "bad_request", "b1")


# --- too_large --------------------------------------------------------------------------------


def send_frame(world: World, body: str, client_message_id: str) -> Frame:
    return {
        "type": "send-message",
        "roomId": world.general.pk,
        "message": body,
        "clientMessageId": client_message_id,
    }


async def test_message_over_4000_characters_is_too_large(world: World, ws: Connections) -> None:
    client = await ws.open(world.alice)
    await assert_refused(client, send_frame(world, "x" * 4001, "big"), "too_large", "big")


async def test_message_of_exactly_4000_characters_is_saved(world: World, ws: Connections) -> None:
    client = await ws.open(world.alice)

    await client.send(send_frame(world, "x" * 4000, "max"))

    sent = await client.receive()
    assert sent["type"] == "message-sent", sent
    saved = await database_sync_to_async(Message.objects.get)(pk=sent["messageId"])
    assert len(saved.body) == 4000


def padded_ping(size: int) -> str:
    """A valid ping frame of exactly `size` bytes of UTF-8."""
    empty = json.dumps({"type": "ping", "pad": ""})
    text = json.dumps({"type": "ping", "pad": "x" * (size - len(empty))})
    assert len(text.encode()) == size
    return text


async def test_frame_of_exactly_64_kib_is_accepted(world: World, ws: Connections) -> None:
    client = await ws.open(world.alice)

    await client.communicator.send_to(text_data=padded_ping(64 * 1024))

    assert await client.receive() == {"type": "pong"}


async def test_frame_over_64_kib_is_too_large(world: World, ws: Connections) -> None:
    client = await ws.open(world.alice)
    await assert_refused(client, "x" * (64 * 1024 + 1), "too_large", None)
    # An oversized frame need not be parsed to be refused, so its ref may be unknown.
    before = await saved_state()
    await client.communicator.send_to(text_data=padded_ping(64 * 1024 + 1))
    error = await client.receive()
    assert (error["type"], error["code"]) == ("error", "too_large")
    assert error["ref"] in (None, "ping")
    big_send = send_frame(world, "hi", "huge") | {"pad": "x" * (64 * 1024)}
    await client.send(big_send)
    error = await client.receive()
    assert (error["type"], error["code"]) == ("error", "too_large")
    assert error["ref"] in (None, "huge")
    await assert_usable(client)
    assert await saved_state() == before


# --- rate_limited -----------------------------------------------------------------------------


async def test_rate_limit_refuses_new_messages_but_not_repeats(
    world: World, ws: Connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await ws.open(world.alice)
    # A fixed window: the limiter's clock stands still in the middle of one, so all four sends
    # fall in the same window however long a loaded machine takes over them.
    frozen = time.time() // 60 * 60 + 30
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: frozen))
    with override_settings(CHAT_RATE_LIMIT_MESSAGES=3, CHAT_RATE_LIMIT_WINDOW_SECONDS=60):
        replies = []
        for n in range(3):
            await client.send(send_frame(world, f"m{n}", f"r{n}"))
            replies.append(await client.receive_type("message-sent"))
            await client.receive_type("chat-room-updated")  # so the refusal is the next frame

        await assert_refused(client, send_frame(world, "one too many", "r3"), "rate_limited", "r3")

        await client.send(send_frame(world, "m0", "r0"))
        assert await client.receive_type("message-sent") == replies[0]
    count = database_sync_to_async(Message.objects.filter(sender=world.alice).count)
    assert await count() == 3


# --- handshakes -------------------------------------------------------------------------------


async def test_valid_token_is_accepted(world: World, ws: Connections) -> None:
    token = await database_sync_to_async(token_for)(world.alice)
    connected, client = await connect(token)
    ws.keep(client)
    assert connected
    assert (await client.receive())["type"] == "unread-state"


async def test_handshake_without_token_is_refused(ws: Connections) -> None:
    connected, client = await connect(None)
    ws.keep(client)
    assert not connected


async def test_handshake_with_forged_token_is_refused(world: World, ws: Connections) -> None:
    await database_sync_to_async(token_for)(world.alice)
    connected, client = await connect("forged-" + "x" * 36)
    ws.keep(client)
    assert not connected


@database_sync_to_async
def _token_then(user: Any, **changes: Any) -> str:
    token = token_for(user)
    AuthToken.objects.filter(user=user).update(**changes)
    return token


async def test_handshake_with_expired_token_is_refused(world: World, ws: Connections) -> None:
    token = await _token_then(world.alice, expires_at=timezone.now() - timedelta(seconds=1))
    connected, client = await connect(token)
    ws.keep(client)
    assert not connected


async def test_handshake_with_revoked_token_is_refused(world: World, ws: Connections) -> None:
    token = await _token_then(world.alice, revoked_at=timezone.now())
    connected, client = await connect(token)
    ws.keep(client)
    assert not connected


async def test_handshake_of_inactive_user_is_refused(world: World, ws: Connections) -> None:
    token = await database_sync_to_async(token_for)(world.alice)
    await database_sync_to_async(type(world.alice).objects.filter(pk=world.alice.pk).update)(
        is_active=False
    )
    connected, client = await connect(token)
    ws.keep(client)
    assert not connected


async def _connect_with_origin(token: str, origin: bytes) -> tuple[bool, Client]:
    communicator = WebsocketCommunicator(
        application, f"/ws/chat/?token={token}", headers=[(b"origin", origin)]
    )
    connected, _ = await communicator.connect(timeout=5)
    return connected, Client(communicator)


async def test_foreign_origin_is_refused_even_with_a_valid_token(
    world: World, ws: Connections
) -> None:
    token = await database_sync_to_async(token_for)(world.alice)
    connected, client = await _connect_with_origin(token, b"http://evil.example")
    ws.keep(client)
    assert not connected


@pytest.mark.parametrize("origin", [b"http://localhost", b"http://localhost:8000"])
async def test_own_origin_is_accepted(world: World, ws: Connections, origin: bytes) -> None:
    token = await database_sync_to_async(token_for)(world.alice)
    connected, client = await _connect_with_origin(token, origin)
    ws.keep(client)
    assert connected
    assert (await client.receive())["type"] == "unread-state"
