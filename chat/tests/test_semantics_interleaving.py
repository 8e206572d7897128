"""Everything that moves a badge, interleaved at random across two real daphne processes:
messages with and without mentions, edits, deletes, reads, mark-unread, viewing, levels and
leaving. Afterwards every connection shows the database's counts, a fresh snapshot is the
database, and reconcile finds no drift; with Redis restarted empty mid-run, the same.
(shared/PROTOCOL.md, "Badges as chat products define them", "Truth".)"""

import asyncio
import json
import random
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from badges.selectors import room_counts_for_users, totals
from chat.models import Message
from chat.tests.helpers import make_room, make_user, token_for
from chat.tests.processes import Daphne, OwnRedis, WsClient, start_servers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PEOPLE = 5
STEPS = 24
ACTIONS = {
    "send": 6,
    "edit": 2,
    "delete": 1,
    "read": 2,
    "unread": 2,
    "view": 2,
    "unview": 2,
    "level": 2,
    "leave": 1,
}
LEVELS = ["all", "mentions", "none"]


@dataclass
class Actor:
    """One user, a device on each process, acting one step at a time."""

    person: Any
    token: str
    devices: list[WsClient]
    rooms: list[int]
    rng: random.Random
    sent: list[tuple[int, int]] = field(default_factory=list)  # (room, message) still there


def _body(rng: random.Random, text: str) -> str:
    mention = rng.choice(["", "", " @u1", " @U2", " @u3 and @u4", " @room", " @u0."])
    return f"{text}{mention}"


async def _message_ids(room_id: int) -> list[int]:
    return await database_sync_to_async(
        lambda: list(Message.objects.filter(room_id=room_id).values_list("id", flat=True))
    )()


async def _request(device: WsClient, frame: dict[str, Any], reply_type: str) -> dict[str, Any]:
    """Send a frame; its reply, or the error that refers to it (`ref`), not another's."""
    await device.send(frame)
    ref = frame.get("clientMessageId", frame["type"])
    while True:
        reply = await device.receive_type(reply_type, "error", timeout=30)
        if reply["type"] == reply_type or reply.get("ref") == ref:
            return reply


async def _act(actor: Actor, servers: list[Daphne], step: int, tag: str) -> None:
    rng = actor.rng
    if not actor.rooms:
        return
    action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
    room_id = rng.choice(actor.rooms)
    n = rng.randrange(len(servers))
    device, server = actor.devices[n], servers[n]
    if action == "send":
        key = f"{tag}-{step}"
        frame = {"type": "send-message", "roomId": room_id, "message": _body(rng, key)}
        reply = await _request(device, {**frame, "clientMessageId": key}, "message-sent")
        assert reply["type"] == "message-sent", reply
        actor.sent.append((room_id, reply["messageId"]))
    elif action in ("edit", "delete"):
        mine = [(room, message) for room, message in actor.sent if room in actor.rooms]
        if not mine:
            return
        room, message = rng.choice(mine)
        path = f"/api/rooms/{room}/messages/{message}"
        if action == "edit":
            status, _ = await asyncio.to_thread(
                server.call, "PATCH", path, actor.token, {"message": _body(rng, f"edited {tag}")}
            )
            assert status == 200, status
        else:
            status, _ = await asyncio.to_thread(server.call, "DELETE", path, actor.token)
            assert status == 204, status
            actor.sent.remove((room, message))
    elif action in ("read", "unread"):
        ids = await _message_ids(room_id)
        if not ids:
            return
        # Its reply is a badge frame like any other, so nothing to wait for: what it moved is
        # checked at the end (and an error it got, in `_check`).
        kind = "mark-read" if action == "read" else "mark-unread"
        await device.send({"type": kind, "roomId": room_id, "messageId": rng.choice(ids)})
    elif action == "view":
        reply = await _request(device, {"type": "join-room", "roomId": room_id}, "joined-room")
        assert reply["type"] == "joined-room", reply
    elif action == "unview":
        reply = await _request(device, {"type": "leave-room", "roomId": room_id}, "left-room")
        assert reply["type"] == "left-room", reply
    elif action == "level":
        path = f"/api/rooms/{room_id}/notifications"
        status, _ = await asyncio.to_thread(
            server.call, "PUT", path, actor.token, {"level": rng.choice(LEVELS)}
        )
        assert status == 200, status
    elif action == "leave" and len(actor.rooms) > 1:
        path = f"/api/rooms/{room_id}/membership"
        status, _ = await asyncio.to_thread(server.call, "DELETE", path, actor.token)
        assert status == 204, status
        actor.rooms.remove(room_id)


def _shown(client: WsClient) -> tuple[int, int, int]:
    """(version, total, mention total) of the newest count the connection was shown."""
    return max(
        (frame["version"], frame["totalUnreadCount"], frame["totalMentionCount"])
        for frame in client.frames
        if frame["type"] in {"unread-state", "total-unread-count-updated"}
    )


def _truth(user_id: int) -> tuple[dict[int, tuple[int, int, str]], tuple[int, int]]:
    rooms = room_counts_for_users([user_id])[user_id]
    by_room = {room_id: (room.unread, room.mentions, room.level) for room_id, room in rooms.items()}
    return by_room, totals(rooms)


async def _setup(servers: list[Daphne], seed: int) -> list[Actor]:
    people = await database_sync_to_async(lambda: [make_user(f"u{i}") for i in range(PEOPLE)])()
    await database_sync_to_async(
        lambda: [
            make_room(f"r{j}", [p for i, p in enumerate(people) if (i + j) % 4 != 0 or i == 0])
            for j in range(3)
        ]
    )()
    actors = []
    for i, person in enumerate(people):
        token = await database_sync_to_async(token_for)(person)
        rooms = await database_sync_to_async(
            lambda p=person: list(p.chat_memberships.values_list("room_id", flat=True))
        )()
        devices = [
            await WsClient.open(server.ws_url(token), f"{person.username}@{n}")
            for n, server in enumerate(servers)
        ]
        actors.append(Actor(person, token, devices, rooms, random.Random(seed * 100 + i)))
    return actors


async def _run(actors: list[Actor], servers: list[Daphne], steps: range, seed: int) -> None:
    async def act_all(actor: Actor, i: int) -> None:
        for step in steps:
            await _act(actor, servers, step, f"{seed}-{i}")

    await asyncio.gather(*(act_all(actor, i) for i, actor in enumerate(actors)))


async def _check(actors: list[Actor], servers: list[Daphne]) -> None:
    for actor in actors:
        for device in actor.devices:
            await device.drain()
    for actor in actors:
        rooms, (total, mention_total) = await database_sync_to_async(_truth)(actor.person.pk)
        for device in actor.devices:
            assert device.closed is None, device.name
            assert _shown(device)[1:] == (total, mention_total), "\n".join(
                [f"{device.name}: the database says {rooms}; its last frames:"]
                + [json.dumps(f) for f in device.frames if f["type"] != "chat-message"][-8:]
            )
            # The refusals expected, of frames sent without waiting: reading or marking unread
            # a message its sender deleted meanwhile, or in a room the actor left just after.
            errors = [frame for frame in device.frames if frame["type"] == "error"]
            assert all(
                error["code"] in {"not_found", "not_a_member"}
                and error["ref"] in {"mark-read", "mark-unread"}
                for error in errors
            ), errors
        fresh = await WsClient.open(servers[0].ws_url(actor.token), "fresh")
        snapshot = fresh.frames[0]
        await fresh.close()
        shown = {
            entry["roomId"]: (entry["unreadCount"], entry["mentionCount"], entry["level"])
            for entry in snapshot["rooms"]
        }
        assert shown == rooms, actor.person.username
        assert (snapshot["totalUnreadCount"], snapshot["totalMentionCount"]) == (
            total,
            mention_total,
        )
    out = StringIO()
    await database_sync_to_async(call_command)(
        "reconcile_unread_counts", "--check", "--dry-run", "--json", stdout=out
    )
    assert '"users_drifted": 0' in out.getvalue(), out.getvalue()


async def _close(actors: list[Actor]) -> None:
    for actor in actors:
        for device in actor.devices:
            await device.close()


@pytest.mark.parametrize("seed", [21, 22])
async def test_random_interleaving_across_two_processes_ends_exact(
    servers: list[Daphne], seed: int
) -> None:
    actors = await _setup(servers, seed)
    try:
        await _run(actors, servers, range(STEPS), seed)
        await _check(actors, servers)
    finally:
        await _close(actors)


async def test_random_interleaving_with_redis_restarted_empty_midway_ends_exact() -> None:
    redis = OwnRedis()
    redis.start()
    servers: list[Daphne] = []
    actors: list[Actor] = []
    try:
        servers = await asyncio.to_thread(start_servers, 2, REDIS_URL=redis.url)
        actors = await _setup(servers, 23)
        await _run(actors, servers, range(STEPS // 2), 23)
        # Redis restarts empty between two halves of the run; the second half starts at once,
        # racing the processes' resyncs.
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(redis.start)
        await _run(actors, servers, range(STEPS // 2, STEPS), 23)
        await _check(actors, servers)
    finally:
        await _close(actors)
        for server in servers:
            server.stop()
        redis.stop()
