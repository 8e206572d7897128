"""Connections that open and close leave nothing behind (issue 8, "Memory that stays flat").

The 10-minute soak reconnects clients all the time. Each closed connection must leave no entry
in the channel layer (channels, groups), the live registry or the presence keys, and its
consumer must be freed by reference counting: garbage in a reference cycle waits for the
collector's next full collection, which is what made the soak's RSS climb in steps.
"""

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chat import live
from chat.tests.helpers import close_quietly, connect_user, eventually, make_room, make_user

pytestmark = pytest.mark.django_db(transaction=True)

CYCLES = 20


@pytest.fixture
def no_cyclic_collector() -> Iterator[None]:
    """Only reference counting frees objects in the test: what the collector would free later
    is what piles up between its full collections."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_connect_disconnect_cycles_leave_no_entries_and_no_cycles(
    no_cyclic_collector: None,
) -> None:
    alice, bob = await database_sync_to_async(lambda: [make_user("alice"), make_user("bob")])()
    room = await database_sync_to_async(make_room)("r", [alice, bob])
    layer = get_channel_layer()
    loop_layer = layer._get_layer()
    keeper, _ = await connect_user(bob)  # one connection stays open through the churn
    consumers: list[weakref.ref[object]] = []
    channels: set[str] = set()
    try:
        for i in range(CYCLES):
            client, _ = await connect_user(alice)
            if i % 2:  # half of them view the room: presence and room groups too
                await client.request({"type": "join-room", "roomId": room.pk}, "joined-room")
            [consumer] = [c for c in live.live_connections() if c.user_id == alice.pk]
            consumers.append(weakref.ref(consumer))
            channels.add(consumer.channel_name)  # type: ignore[attr-defined]
            del consumer
            await client.close()
            del client
            await eventually(lambda: len(live.live_connections()) == 1)
        # The closed connections' cancelled presence tasks have finished: only the keeper's runs.
        await eventually(lambda: len(_presence_tasks()) == 1)
        assert [c.user_id for c in live.live_connections()] == [bob.pk]
        assert not channels & set(loop_layer.channels)
        assert not any(channels & members for members in loop_layer.groups.values())
        alive = [ref for ref in consumers if ref() is not None]
        assert not alive, f"{len(alive)} of {CYCLES} closed consumers wait for the collector"
    finally:
        await close_quietly([keeper])


def _presence_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("._keep_presence")
    ]
