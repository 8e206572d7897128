"""A burst that backs up the badge lane: it batches, then sheds to a rebuild, and ends exact."""

import asyncio
import threading
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from badges import services as badge_services
from badges.selectors import unread_counts_from_db
from badges.services import badges_state
from chat import services
from chat.tests.helpers import PATIENCE_S, Client, close_quietly, connect_user, make_room, make_user
from chatproject import lanes
from chatproject.metrics import COUNTERS_REBUILT, LANE_EVENTS_COALESCED, LANE_EVENTS_SHED

pytestmark = pytest.mark.django_db(transaction=True)

LANE = "badges.message_created"


def _value(metric: Any) -> float:
    return float(metric._value.get())


def _truth(user_id: int) -> dict[int, int]:
    return {room: unread for room, (_, unread) in unread_counts_from_db(user_id).items()}


def _shown(client: Client, snapshot: dict[str, Any]) -> tuple[int, dict[int, int]]:
    """What a client that follows the protocol shows after applying every frame it got."""
    version = snapshot["version"]
    total = snapshot["totalUnreadCount"]
    rooms = {room["roomId"]: room["unreadCount"] for room in snapshot["rooms"]}
    for frame in client.frames:
        if frame["type"] == "chat-room-updated":
            rooms[frame["roomId"]] = frame["unreadCount"]
        elif frame["type"] == "total-unread-count-updated" and frame["version"] > version:
            version, total = frame["version"], frame["totalUnreadCount"]
            rooms[frame["roomId"]] = frame["roomUnreadCount"]
    return total, rooms


async def _drain(client: Client) -> None:
    while not await client.nothing_more(0.5):
        await client.receive()


def _hold_lane(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make the badge lane's receiver wait on its first event, so what comes behind backs up:
    `entered` is set once it waits, setting `gate` lets it go on."""
    lane = lanes._lanes[LANE]
    entered, gate = threading.Event(), threading.Event()
    receiver = lane.receiver

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        gate.wait(30)
        return receiver(*args, **kwargs)

    monkeypatch.setattr(lane, "receiver", held)
    return entered, gate


async def test_a_burst_past_the_lane_bound_is_batched_then_shed_and_ends_exact(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CHAT_LANE_LIMIT = 20
    settings.CHAT_LANE_BATCH = 8
    alice, bob, carol = [await database_sync_to_async(make_user)(n) for n in "abc"]
    first = await database_sync_to_async(make_room)("first", [alice, bob, carol])
    second = await database_sync_to_async(make_room)("second", [alice, bob])
    bob_client, bob_snapshot = await connect_user(bob)

    # Hold the lane on its first event so the burst behind it backs up.
    lane = lanes._lanes[LANE]
    entered, gate = _hold_lane(monkeypatch)
    shed, coalesced = (
        _value(LANE_EVENTS_SHED.labels(LANE)),
        _value(LANE_EVENTS_COALESCED.labels(LANE)),
    )
    rebuilt = _value(COUNTERS_REBUILT.labels("shed"))

    def send(n: int) -> int:
        room = first if n % 3 else second
        sent = services.message_send(
            sender_id=alice.pk, room_id=room.pk, body=f"burst {n}", client_message_id=f"b{n}"
        )
        return sent.message.pk

    try:
        await database_sync_to_async(send)(0)
        assert await database_sync_to_async(entered.wait)(10)
        ids = [await database_sync_to_async(send)(n) for n in range(1, 151)]
        # carol reads part of the first room mid-burst (inline, not on the lane)
        await database_sync_to_async(services.room_mark_read)(
            user_id=carol.pk, room_id=first.pk, message_id=ids[60]
        )
        assert lane.queued == 20  # the bound; the 130 after it were folded into one rebuild
        assert _value(LANE_EVENTS_SHED.labels(LANE)) - shed == 130
    finally:
        gate.set()
    assert await database_sync_to_async(lanes.flush)(30), "the lane did not drain"

    assert lane.queued == 0 and not lane.items
    assert _value(lanes.LANE_BACKLOG.labels(LANE)) == 0
    assert _value(LANE_EVENTS_COALESCED.labels(LANE)) - coalesced == 20  # batches of 8, 8, 4
    assert _value(COUNTERS_REBUILT.labels("shed")) - rebuilt == 3  # alice, bob, carol
    for person in (alice, bob, carol):
        truth = await database_sync_to_async(_truth)(person.pk)
        state = await database_sync_to_async(badges_state)(user_id=person.pk, room_ids=list(truth))
        assert state.rooms == truth, f"{person.username}: redis {state.rooms} != db {truth}"
        assert state.total == sum(truth.values())
    bob_truth = await database_sync_to_async(_truth)(bob.pk)
    assert bob_truth == {first.pk: 100, second.pk: 51}

    # bob's open connection ends up showing the database's counts too.
    await _drain(bob_client)
    assert _shown(bob_client, bob_snapshot) == (151, bob_truth)
    await close_quietly([bob_client])

    out = StringIO()
    await database_sync_to_async(call_command)(
        "reconcile_unread_counts", "--check", "--dry-run", "--json", stdout=out
    )
    assert '"users_drifted": 0' in out.getvalue()


async def test_a_small_backlog_is_one_batch_with_every_frame_in_order(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = [await database_sync_to_async(make_user)(n) for n in "ab"]
    room = await database_sync_to_async(make_room)("room", [alice, bob])
    bob_client, _ = await connect_user(bob)
    entered, gate = _hold_lane(monkeypatch)
    # Two members a message: the batch of five goes to Redis and out in three chunks.
    monkeypatch.setattr(badge_services, "_MEMBER_UPDATES_PER_CALL", 4)
    coalesced = _value(LANE_EVENTS_COALESCED.labels(LANE))

    def send(n: int) -> None:
        services.message_send(
            sender_id=alice.pk, room_id=room.pk, body=f"m{n}", client_message_id=f"m{n}"
        )

    try:
        await database_sync_to_async(send)(0)
        assert await database_sync_to_async(entered.wait)(10)
        for n in range(1, 6):
            await database_sync_to_async(send)(n)
    finally:
        gate.set()
    assert await database_sync_to_async(lanes.flush)(PATIENCE_S)
    assert _value(LANE_EVENTS_COALESCED.labels(LANE)) - coalesced == 5
    totals = [
        (await bob_client.receive_type("total-unread-count-updated"))["totalUnreadCount"]
        for _ in range(6)
    ]
    # Batched in Redis and in one publish, but a client that keeps up still sees every step.
    assert totals == [1, 2, 3, 4, 5, 6]
    await asyncio.sleep(0)
    await close_quietly([bob_client])
