"""Many clients doing everything at once: afterwards Redis, every client and the database agree."""

import asyncio
import random
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from badges import counters
from badges.selectors import unread_counts_from_db
from badges.services import badges_state
from chat.models import Message
from chat.tests.helpers import PATIENCE_S, Client, connect_user, make_room, make_user
from chatproject import lanes
from chatproject.redis_client import redis_connection

pytestmark = pytest.mark.django_db(transaction=True)


def _world(users: int, rooms: int) -> tuple[list[Any], list[Any]]:
    people = [make_user(f"u{i}") for i in range(users)]
    places = [
        make_room(f"r{j}", [p for i, p in enumerate(people) if (i + j) % 3 != 0 or i == 0])
        for j in range(rooms)
    ]
    return people, places


def _truth(user_id: int) -> dict[int, int]:
    return {room: unread for room, (_, unread) in unread_counts_from_db(user_id).items()}


def _latest_message_ids() -> dict[int, list[int]]:
    ids: dict[int, list[int]] = {}
    for room_id, message_id in Message.objects.values_list("room_id", "id"):
        ids.setdefault(room_id, []).append(message_id)
    return ids


async def _actor(
    rng: random.Random, user: Any, client: Client, rooms: list[Any], steps: int, tag: str
) -> None:
    my_rooms = [room for room in rooms if room.member_ids and user.pk in room.member_ids]
    for step in range(steps):
        room = rng.choice(my_rooms)
        action = rng.choices(["send", "join", "leave", "read"], weights=[5, 2, 2, 2])[0]
        if action == "send":
            await client.request(
                {
                    "type": "send-message",
                    "roomId": room.pk,
                    "message": f"{tag} {step}",
                    "clientMessageId": f"{tag}-{step}",
                },
                "message-sent",
            )
        elif action == "join":
            await client.request({"type": "join-room", "roomId": room.pk}, "joined-room")
        elif action == "leave":
            await client.request({"type": "leave-room", "roomId": room.pk}, "left-room")
        else:
            ids = (await database_sync_to_async(_latest_message_ids)()).get(room.pk)
            if ids:
                await client.request(
                    {"type": "mark-read", "roomId": room.pk, "messageId": rng.choice(ids)},
                    "total-unread-count-updated",
                )
        await asyncio.sleep(0)


async def _drain(client: Client) -> None:
    while not await client.nothing_more(0.3):
        await client.receive()


def _client_total(client: Client) -> tuple[int, int]:
    """(version, total) of the newest count this connection was shown."""
    shown = [
        (frame["version"], frame["totalUnreadCount"])
        for frame in client.frames
        if frame["type"] in {"unread-state", "total-unread-count-updated"}
    ]
    return max(shown)


async def _run(seed: int, *, flush_midway: bool) -> None:
    rng = random.Random(seed)
    people, rooms = await database_sync_to_async(_world)(6, 3)
    for room in rooms:
        room.member_ids = await database_sync_to_async(
            lambda r=room: set(r.memberships.values_list("user_id", flat=True))
        )()
    connections: list[tuple[Any, Client]] = []
    for person in people:
        for _ in range(2):
            client, _snapshot = await connect_user(person)
            client.frames.append(_snapshot)
            connections.append((person, client))

    async def phase(name: str) -> None:
        await asyncio.gather(
            *(
                _actor(rng, person, client, rooms, 12, f"{name}{i}")
                for i, (person, client) in enumerate(connections)
            )
        )

    await phase("a")
    if flush_midway:
        await database_sync_to_async(redis_connection().flushdb)()
    await phase("b")
    assert await database_sync_to_async(lanes.flush)(PATIENCE_S)
    for _, client in connections:
        await _drain(client)

    for person, client in connections:
        truth = await database_sync_to_async(_truth)(person.pk)
        state = await database_sync_to_async(badges_state)(user_id=person.pk, room_ids=list(truth))
        assert state.rooms == truth, f"user {person.pk}: redis {state.rooms} != db {truth}"
        assert state.total == sum(truth.values())
        if not flush_midway:
            # Every change reached every device: the newest count each one shows is the truth.
            assert _client_total(client)[1] == sum(truth.values())
    for _, client in connections:
        await client.close()

    out = StringIO()
    await database_sync_to_async(call_command)(
        "reconcile_unread_counts", "--check", "--dry-run", "--json", stdout=out
    )
    assert '"users_drifted": 0' in out.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
async def test_random_concurrent_traffic_matches_the_database(seed: int) -> None:
    await _run(seed, flush_midway=False)


@pytest.mark.slow
async def test_counts_come_back_after_flushdb_midway() -> None:
    await _run(3, flush_midway=True)


def test_reconcile_repairs_drift_and_check_reports_it() -> None:
    people, rooms = _world(3, 1)
    sender, reader = people[0], people[1]
    Message.objects.create(room=rooms[0], sender=sender, body="x", client_message_id="d1")
    assert lanes.flush(PATIENCE_S)
    badges_state(user_id=reader.pk, room_ids=[rooms[0].pk])
    # Corrupt the copy: an unread id that no message has.
    redis_connection().zadd(counters._room_keys(reader.pk, rooms[0].pk)[0], {"999999": 999999})
    with pytest.raises(SystemExit) as exit_info:
        call_command("reconcile_unread_counts", "--check", "--dry-run", stdout=StringIO())
    assert exit_info.value.code == 1
    out = StringIO()
    call_command("reconcile_unread_counts", "--json", stdout=out)
    assert '"counters_repaired": 1' in out.getvalue()
    state = badges_state(user_id=reader.pk, room_ids=[rooms[0].pk])
    assert state.rooms[rooms[0].pk] == _truth(reader.pk)[rooms[0].pk] == 1
    call_command("reconcile_unread_counts", "--check", "--user", reader.username, stdout=StringIO())
