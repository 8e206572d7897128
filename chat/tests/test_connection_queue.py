"""A connection's outgoing queue: bounded, newest badge wins, chat messages never coalesced."""

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chat.tests.helpers import close_quietly, connect_user, eventually, make_user
from chatproject import fanout
from chatproject.connection_queue import ConnectionQueue
from chatproject.metrics import (
    CONNECTION_FRAMES_COALESCED,
    CONNECTION_FRAMES_DROPPED,
    CONNECTION_QUEUES_ABANDONED,
    SLOW_CONSUMER_DISCONNECTS,
)


def _queue(limit: int = 10, coalesce_after: int = 0) -> ConnectionQueue:
    layer = get_channel_layer()
    return ConnectionQueue(
        limit=limit, deserialize=layer.deserialize, coalesce_after=coalesce_after
    )


def _put(queue: ConnectionQueue, *frames: dict[str, Any]) -> None:
    queue.put_nowait(get_channel_layer().serialize({"type": "chat.frames", "frames": list(frames)}))


def _total(room: int, version: int, total: int = 0) -> dict[str, Any]:
    return {
        "type": "total-unread-count-updated",
        "totalUnreadCount": total,
        "roomId": room,
        "roomUnreadCount": total,
        "version": version,
    }


def _room(room: int, message_id: int, count: int) -> dict[str, Any]:
    return {
        "type": "chat-room-updated",
        "roomId": room,
        "lastMessage": {"id": message_id},
        "unreadCount": count,
    }


def _chat(room: int, message_id: int) -> dict[str, Any]:
    return {"type": "chat-message", "roomId": room, "message": {"id": message_id}}


async def _drain(queue: ConnectionQueue) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not queue.empty():
        frames += (await queue.get())["frames"]
    return frames


def _value(metric: Any) -> float:
    return float(metric._value.get())


async def test_newest_badge_per_room_wins_and_keeps_version_order() -> None:
    queue = _queue()
    coalesced = _value(CONNECTION_FRAMES_COALESCED)
    for n in range(1, 6):
        _put(queue, _room(1, 100 + n, n), _total(1, 10 + n, total=n))
    _put(queue, _room(2, 200, 1), _total(2, 20, total=6))
    _put(queue, _room(1, 106, 6), _total(1, 21, total=7))
    assert queue.qsize() == 4
    assert await _drain(queue) == [
        _room(2, 200, 1),
        _total(2, 20, total=6),
        _room(1, 106, 6),
        _total(1, 21, total=7),
    ]
    assert _value(CONNECTION_FRAMES_COALESCED) - coalesced == 10


async def test_an_older_total_arriving_late_does_not_replace_a_newer_one() -> None:
    queue = _queue()
    _put(queue, _total(1, 30, total=3))
    _put(queue, _total(2, 31, total=4))
    _put(queue, _total(1, 29, total=2))  # published before 30, delivered after it
    assert await _drain(queue) == [_total(1, 30, total=3), _total(2, 31, total=4)]


async def test_chat_messages_are_never_coalesced_and_count_toward_the_limit() -> None:
    queue = _queue(limit=5)
    for n in range(5):
        _put(queue, _chat(1, n))
        _put(queue, _room(1, n, 0))
    assert queue.qsize() == 6 and not queue.overflowed
    frames = await _drain(queue)
    assert [f["message"]["id"] for f in frames if f["type"] == "chat-message"] == [0, 1, 2, 3, 4]
    assert [f for f in frames if f["type"] == "chat-room-updated"] == [_room(1, 4, 0)]


async def test_passing_the_limit_empties_the_queue_and_marks_it_overflowed() -> None:
    queue = _queue(limit=3)
    dropped = _value(CONNECTION_FRAMES_DROPPED)
    for n in range(3):
        _put(queue, _chat(1, n))
    _put(queue, _total(1, 5))
    assert not queue.overflowed
    _put(queue, _chat(1, 3))
    assert queue.overflowed and queue.empty() and queue.qsize() == 0
    _put(queue, _chat(1, 4))  # whatever comes later is dropped too: the connection is closing
    assert queue.empty()
    assert _value(CONNECTION_FRAMES_DROPPED) - dropped == 6


async def test_a_connection_that_keeps_up_gets_every_frame_until_it_is_behind() -> None:
    queue = _queue(coalesce_after=4)
    for n in range(1, 7):
        _put(queue, _total(1, n, total=n))
    # Four queued as published; from then on the connection is behind and the rest coalesce.
    assert [f["version"] for f in await _drain(queue)] == [1, 2, 3, 4, 6]
    queue.behind = True  # the consumer is waiting for its client to read
    _put(queue, _total(1, 7))
    _put(queue, _total(1, 8))
    assert [f["version"] for f in await _drain(queue)] == [8]


async def test_a_long_batch_of_badge_frames_does_not_count_toward_the_limit() -> None:
    # One user's frames for a lane batch arrive as one message, however many there are.
    queue = _queue(limit=3, coalesce_after=32)
    _put(queue, *[frame for n in range(100) for frame in (_room(1, n, n), _total(1, n + 1))])
    _put(queue, _chat(1, 1), _room(1, 101, 0), _chat(1, 2))
    assert not queue.overflowed and queue.qsize() == 203
    _put(queue, _chat(1, 3), _chat(1, 4))  # 2 + 2 chat messages: past the limit of 3
    assert queue.overflowed


async def test_a_waiting_consumer_gets_each_message_as_published() -> None:
    queue = _queue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    _put(queue, _room(1, 1, 1), _total(1, 2, total=1))
    assert (await asyncio.wait_for(getter, 1))["frames"] == [_room(1, 1, 1), _total(1, 2, total=1)]


async def test_other_messages_pass_untouched_and_count_toward_the_limit() -> None:
    queue = _queue(limit=2)
    queue.put_nowait(get_channel_layer().serialize({"type": "chat.resync", "n": 1}))
    _put(queue, {"type": "something-new", "n": 2}, _total(1, 3))
    assert queue.qsize() == 3
    assert await queue.get() == {"type": "chat.resync", "n": 1}
    assert await queue.get() == {
        "type": "chat.frames",
        "frames": [{"type": "something-new", "n": 2}],
    }
    assert await queue.get() == {"type": "chat.frames", "frames": [_total(1, 3)]}


async def test_the_channel_layer_queues_a_channel_nobody_reads_with_coalescing() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("user.77", channel)
    queue = layer.connection_queue(channel)
    assert queue is not None
    queue.behind = True
    sends = [
        ("user.77", {"type": "chat.frames", "frames": [_room(9, n, n), _total(9, 1000 + n, n)]})
        for n in range(1, 201)
    ]
    await sync_to_async(fanout.publish)(sends)
    # The layer's reader task delivers asynchronously.
    await eventually(
        lambda: queue.qsize() == 2 and _total(9, 1200, 200) in list(queue._entries.values())
    )
    message = await asyncio.wait_for(layer.receive(channel), 3)
    assert message["frames"] == [_room(9, 200, 200), _total(9, 1200, 200)]
    await layer.group_discard("user.77", channel)


@pytest.mark.django_db(transaction=True)
async def test_a_consumer_whose_queue_overflows_is_closed_with_4008(settings: Any) -> None:
    settings.CHAT_CONNECTION_QUEUE_LIMIT = 3
    alice = await database_sync_to_async(make_user)("alice")
    client, _ = await connect_user(alice)
    layer = get_channel_layer()
    channel = next(iter(layer._get_layer().channels))
    queue = layer.connection_queue(channel)
    assert queue is not None and queue.limit == 3
    # A burst the consumer has no chance to take in between: the first is handed over, the
    # next three fill the queue, the fifth would pass the limit.
    for n in range(5):
        _put(queue, _chat(1, n))
    assert queue.overflowed
    dropped = _value(CONNECTION_FRAMES_DROPPED)
    closes = _value(SLOW_CONSUMER_DISCONNECTS.labels("queue_overflow"))
    output = await client.communicator.receive_output(timeout=3)
    assert output == {"type": "websocket.close", "code": 4008}
    assert _value(SLOW_CONSUMER_DISCONNECTS.labels("queue_overflow")) - closes == 1
    _put(queue, _chat(1, 5))
    assert _value(CONNECTION_FRAMES_DROPPED) - dropped == 1
    await close_quietly([client])


async def test_channels_no_consumer_reads_any_more_are_dropped() -> None:
    """A consumer that left its groups but whose receive was not cancelled (channels does not
    cancel a receive that already has a message) leaves its channel: the layer drops it."""
    layer = get_channel_layer()
    gone, alive, idle = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("user.5", gone)
    await layer.group_add("user.6", alive)
    for channel in (gone, alive):
        queue = layer.connection_queue(channel)
        assert queue is not None
        _put(queue, _chat(1, 1))
    waiting = asyncio.ensure_future(layer.receive(idle))  # an idle consumer waits on its queue
    await asyncio.sleep(0)
    loop_layer = layer._get_layer()
    for channel in (gone, alive, idle):
        loop_layer.channels[channel].last_read -= 3600
    abandoned = _value(CONNECTION_QUEUES_ABANDONED)
    loop_layer._swept_at -= 3600
    await layer.group_discard("user.5", gone)  # the consumer's disconnect
    assert gone not in loop_layer.channels
    assert alive in loop_layer.channels and idle in loop_layer.channels
    assert _value(CONNECTION_QUEUES_ABANDONED) - abandoned == 1
    waiting.cancel()
    await layer.group_discard("user.6", alive)
