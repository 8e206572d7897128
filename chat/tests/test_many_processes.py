"""Two real daphne processes on one database and one Redis: one truth wherever users connect."""

import asyncio
import random
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from badges.selectors import unread_counts_from_db
from chat.models import Message
from chat.tests.helpers import PATIENCE_S, make_room, make_user, token_for
from chat.tests.processes import Daphne, WsClient, start_servers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _truth(user_id: int) -> dict[int, int]:
    return {room: unread for room, (_, unread) in unread_counts_from_db(user_id).items()}


async def _open(server: Daphne, user: Any, name: str) -> WsClient:
    token = await database_sync_to_async(token_for)(user)
    return await WsClient.open(server.ws_url(token), name)


async def _close(clients: list[WsClient]) -> None:
    for client in clients:
        await client.close()


async def _total_becomes(
    client: WsClient, total: int, timeout: float = PATIENCE_S
) -> dict[str, Any]:
    while True:
        frame = await client.receive_type("total-unread-count-updated", timeout=timeout)
        if frame["totalUnreadCount"] == total:
            return frame


async def test_a_message_sent_through_one_process_badges_every_device_on_both(
    servers: list[Daphne],
) -> None:
    one, two = servers
    alice, bob, carol = await database_sync_to_async(
        lambda: [make_user(name) for name in ("alice", "bob", "carol")]
    )()
    room = await database_sync_to_async(make_room)("r", [alice, bob, carol])
    alice_one = await _open(one, alice, "alice@1")
    alice_two = await _open(two, alice, "alice@2")
    bob_two = await _open(two, bob, "bob@2")
    carol_one = await _open(one, carol, "carol@1")
    clients = [alice_one, alice_two, bob_two, carol_one]
    try:
        # Presence across processes: carol views the room through process 1.
        await carol_one.request({"type": "join-room", "roomId": room.pk}, "joined-room")
        sent = await bob_two.request(
            {"type": "send-message", "roomId": room.pk, "message": "hi", "clientMessageId": "c1"},
            "message-sent",
        )
        assert sent["type"] == "message-sent"
        for device in (alice_one, alice_two):
            frame = await _total_becomes(device, 1)
            assert frame["roomUnreadCount"] == 1
        seen = await carol_one.receive_type("chat-message")
        assert seen["message"]["id"] == sent["messageId"]
        assert await database_sync_to_async(_truth)(carol.pk) == {room.pk: 0}

        # Idempotency across processes: the same key through the other process saves nothing.
        again = await (await _open(one, bob, "bob@1")).request(
            {"type": "send-message", "roomId": room.pk, "message": "hi", "clientMessageId": "c1"},
            "message-sent",
        )
        assert again["messageId"] == sent["messageId"]
        assert await database_sync_to_async(Message.objects.count)() == 1

        # The read pointer across processes: reading on process 1 clears process 2's device.
        reply = await alice_one.request(
            {"type": "mark-read", "roomId": room.pk, "messageId": sent["messageId"]},
            "total-unread-count-updated",
        )
        assert reply["totalUnreadCount"] == 0
        await _total_becomes(alice_two, 0)
        assert await database_sync_to_async(_truth)(alice.pk) == {room.pk: 0}
    finally:
        await _close(clients)


async def test_the_rate_limit_is_shared_by_the_processes() -> None:
    servers = await asyncio.to_thread(
        start_servers, 2, CHAT_RATE_LIMIT_MESSAGES="4", CHAT_RATE_LIMIT_WINDOW_SECONDS="3600"
    )
    try:
        bob = await database_sync_to_async(make_user)("bob")
        room = await database_sync_to_async(make_room)("r", [bob])
        devices = [await _open(server, bob, f"bob@{i}") for i, server in enumerate(servers)]
        replies = [
            await devices[i % 2].request(
                {
                    "type": "send-message",
                    "roomId": room.pk,
                    "message": "m",
                    "clientMessageId": f"k{i}",
                },
                "message-sent",
            )
            for i in range(6)
        ]
        assert [reply["type"] for reply in replies] == ["message-sent"] * 4 + ["error"] * 2
        assert {reply["code"] for reply in replies[4:]} == {"rate_limited"}
        # A retry of a saved message is never refused, through either process.
        retry = await devices[1].request(
            {"type": "send-message", "roomId": room.pk, "message": "m", "clientMessageId": "k0"},
            "message-sent",
        )
        assert retry["messageId"] == replies[0]["messageId"]
        await _close(devices)
    finally:
        for server in servers:
            server.stop()


async def _actor(
    rng: random.Random, client: WsClient, rooms: list[int], steps: int, tag: str
) -> None:
    for step in range(steps):
        room_id = rng.choice(rooms)
        action = rng.choices(["send", "join", "leave", "read"], weights=[5, 2, 2, 2])[0]
        if action == "send":
            frame = {"type": "send-message", "roomId": room_id, "message": f"{tag} {step}"}
            reply = await client.request(
                {**frame, "clientMessageId": f"{tag}-{step}"}, "message-sent"
            )
        elif action == "join":
            reply = await client.request({"type": "join-room", "roomId": room_id}, "joined-room")
        elif action == "leave":
            reply = await client.request({"type": "leave-room", "roomId": room_id}, "left-room")
        else:
            ids = await database_sync_to_async(
                lambda r=room_id: list(
                    Message.objects.filter(room_id=r).values_list("id", flat=True)
                )
            )()
            if not ids:
                continue
            reply = await client.request(
                {"type": "mark-read", "roomId": room_id, "messageId": rng.choice(ids)},
                "total-unread-count-updated",
            )
        assert reply["type"] != "error", reply


@pytest.mark.parametrize("seed", [11, 12])
async def test_random_traffic_across_both_processes_matches_the_database(
    servers: list[Daphne], seed: int
) -> None:
    rng = random.Random(seed)
    people = await database_sync_to_async(lambda: [make_user(f"u{i}") for i in range(6)])()
    await database_sync_to_async(
        lambda: [
            make_room(f"r{j}", [p for i, p in enumerate(people) if (i + j) % 3 != 0 or i == 0])
            for j in range(3)
        ]
    )()
    rooms_of = await database_sync_to_async(
        lambda: {
            person.pk: list(person.chat_memberships.values_list("room_id", flat=True))
            for person in people
        }
    )()
    # Each user has a device on each process.
    devices = [
        (person, await _open(server, person, f"{person.username}@{n}"))
        for person in people
        for n, server in enumerate(servers)
    ]
    try:
        await asyncio.gather(
            *(
                _actor(rng, client, rooms_of[person.pk], 15, f"{seed}-{i}")
                for i, (person, client) in enumerate(devices)
            )
        )
        for _, client in devices:
            await client.drain()
        for person, client in devices:
            truth = await database_sync_to_async(_truth)(person.pk)
            assert client.closed is None, client.name
            assert client.shown_total()[1] == sum(truth.values()), client.name
            fresh = await _open(servers[0], person, "fresh")
            snapshot = fresh.frames[0]
            await fresh.close()
            assert {r["roomId"]: r["unreadCount"] for r in snapshot["rooms"]} == truth
            assert snapshot["totalUnreadCount"] == client.shown_total()[1]
    finally:
        await _close([client for _, client in devices])
    out = StringIO()
    await database_sync_to_async(call_command)(
        "reconcile_unread_counts", "--check", "--dry-run", "--json", stdout=out
    )
    assert '"users_drifted": 0' in out.getvalue()
