"""The outlet (chatproject/outlet.py): frames written straight to daphne's protocol object when
the client keeps up, the consumer's queue otherwise; and combined frames.

daphne's protocol is stood in for by an object with the attributes the outlet reads (its
state, Twisted's buffer counters, `sendMessage`); the real one is exercised by the process
tests (test_slow_clients.py, test_combined_frames.py)."""

import asyncio
import functools
from typing import Any

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from chat.consumers import ChatConsumer
from chat.tests.helpers import eventually
from chatproject import fanout, outlet
from chatproject.connection_queue import ConnectionQueue


class _Transport:
    def __init__(self) -> None:
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0

    def fileno(self) -> int:
        raise OSError("no socket")  # no kernel queue to read: Twisted's buffer alone counts


class _Protocol:
    STATE_OPEN = 3

    def __init__(self) -> None:
        self.state = self.STATE_OPEN
        self.transport = _Transport()
        self.sent: list[bytes] = []

    def sendMessage(self, payload: bytes, isBinary: bool = False) -> None:  # noqa: N802, N803
        self.sent.append(payload)

    def sendClose(self, code: int | None = None) -> None:  # noqa: N802
        self.state = 0


def _reply(protocol: Any, message: Any) -> None:
    raise AssertionError("the outlet must not go through daphne's handle_reply")


def _consumer(channel_name: str, *, last_version: int = 0, combined: bool = False) -> Any:
    consumer = ChatConsumer()
    consumer.channel_name = channel_name
    consumer.last_version = last_version
    consumer.frames_combined = combined
    consumer.protocol = _Protocol()
    consumer.base_send = functools.partial(_reply, consumer.protocol)
    return consumer


async def _idle_queue() -> tuple[ConnectionQueue, "asyncio.Future[Any]"]:
    """A queue whose consumer waits on it, as an idle consumer does."""
    queue = ConnectionQueue(limit=10, deserialize=orjson.loads)
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert queue.waited_on()
    return queue, getter


def _frames(version: int) -> dict[str, Any]:
    return {
        "type": "chat.frames",
        "frames": [
            {"type": "chat-room-updated", "roomId": 7, "unreadCount": 2, "version": version},
            {"type": "total-unread-count-updated", "roomId": 7, "totalUnreadCount": 5,
             "roomUnreadCount": 2, "version": version},
        ],
    }  # fmt: skip


async def test_frames_are_written_directly_encoded_once_for_every_member() -> None:
    consumers = [_consumer(f"c{i}") for i in range(3)]
    waits = []
    for consumer in consumers:
        queue, getter = await _idle_queue()
        waits.append(getter)
        assert outlet.attach(consumer, queue)
    message = _frames(10)
    encoded: dict[int, bytes] = {}
    try:
        assert all(outlet.write(c.channel_name, message, encoded) for c in consumers)
        expected = [orjson.dumps(frame) for frame in message["frames"]]
        for consumer in consumers:
            assert consumer.protocol.sent == expected
            assert consumer.last_version == 10
        # The same bytes objects for all: each frame was encoded once.
        assert consumers[0].protocol.sent[0] is consumers[2].protocol.sent[0]
        assert not any(getter.done() for getter in waits)  # nothing went through the queues
    finally:
        for consumer, getter in zip(consumers, waits, strict=True):
            outlet.detach(consumer.channel_name)
            getter.cancel()


async def test_a_stale_badge_frame_is_dropped_on_the_direct_path() -> None:
    consumer = _consumer("stale", last_version=20)
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    try:
        assert outlet.write("stale", _frames(10), {})
        # The room update still goes (it carries the last message); the older total does not.
        assert [orjson.loads(sent)["type"] for sent in consumer.protocol.sent] == [
            "chat-room-updated"
        ]
        assert consumer.last_version == 20
    finally:
        outlet.detach("stale")
        getter.cancel()


@pytest.mark.parametrize("situation", ["queue_not_empty", "consumer_busy", "buffer_full", "behind"])
async def test_anything_but_a_client_that_keeps_up_takes_the_queue(situation: str) -> None:
    consumer = _consumer("slow")
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    try:
        if situation == "queue_not_empty":
            getter.cancel()  # an earlier frame waits for the consumer: nothing may overtake it
            await asyncio.sleep(0)
            queue.put_nowait({"type": "chat.frames", "frames": [{"type": "chat-message"}]})
            assert not queue.empty()
        elif situation == "consumer_busy":
            getter.cancel()  # forwarding what it took: not waiting on its queue
            await asyncio.sleep(0)
        elif situation == "buffer_full":
            consumer.protocol.transport.dataBuffer = b"x" * (1024 * 1024)
        else:
            queue.behind = True
        assert not outlet.write("slow", _frames(10), {})
        assert consumer.protocol.sent == []
        assert consumer.last_version == 0  # its versions are judged when the queue hands it over
    finally:
        outlet.detach("slow")
        getter.cancel()


async def test_other_message_types_are_never_written_directly() -> None:
    consumer = _consumer("other")
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    try:
        for message in [
            {"type": "chat.close", "all": True, "token_ids": [], "session_keys": []},
            {"type": "chat.left", "roomId": 3, "anything": {"new": "field"}},
        ]:
            assert not outlet.write("other", message, {})
        assert consumer.protocol.sent == []
    finally:
        outlet.detach("other")
        getter.cancel()


async def test_a_connection_gone_without_disconnect_is_forgotten() -> None:
    consumer = _consumer("gone")
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    attached = outlet.attached()
    del consumer
    try:
        assert not outlet.write("gone", _frames(1), {})
        assert outlet.attached() == attached - 1
    finally:
        getter.cancel()


@pytest.mark.django_db
async def test_the_hub_writes_to_attached_members_and_queues_for_the_others() -> None:
    """Through Redis: one publish, one member written directly, one queued (not attached),
    and a revocation queued for its consumer's generic dispatch."""
    layer = get_channel_layer()
    direct, queued = await layer.new_channel(), await layer.new_channel()
    for channel in (direct, queued):
        await layer.group_add("room.41", channel)
    consumer = _consumer(direct)
    waiting = asyncio.ensure_future(layer.receive(direct))
    await eventually(lambda: layer.connection_queue(direct).waited_on())
    outlet.attach(consumer, layer.connection_queue(direct))
    try:
        frame = {"type": "chat-message", "roomId": 41, "message": {"id": 1, "extra": [1, 2]}}
        await sync_to_async(fanout.publish)(
            [("room.41", {"type": "chat.frames", "frames": [frame]})]
        )
        await eventually(lambda: consumer.protocol.sent)
        assert consumer.protocol.sent == [orjson.dumps(frame)]
        assert (await asyncio.wait_for(layer.receive(queued), 10))["frames"] == [frame]

        close = {"type": "chat.close", "all": True, "token_ids": [], "session_keys": []}
        await sync_to_async(fanout.publish)([("room.41", close)])
        assert await asyncio.wait_for(waiting, 10) == close
    finally:
        outlet.detach(direct)
        waiting.cancel()
        for channel in (direct, queued):
            await layer.group_discard("room.41", channel)


def test_combine_merges_a_room_update_with_its_badge_frames_keeping_every_field() -> None:
    room = {"type": "chat-room-updated", "roomId": 1, "unreadCount": 3, "version": 9,
            "mentionCount": 1, "lastMessage": {"id": 5}}  # fmt: skip
    total = {"type": "total-unread-count-updated", "roomId": 1, "totalUnreadCount": 8,
             "roomUnreadCount": 3, "version": 9, "totalMentionCount": 2,
             "roomLevel": "all"}  # fmt: skip
    other_room = {"type": "chat-room-updated", "roomId": 2, "unreadCount": 1, "version": 10}
    other_total = {"type": "total-unread-count-updated", "roomId": 3, "version": 11}
    combined = outlet.combine([room, total, other_room, other_total])
    assert combined == [
        {
            "type": "chat-room-updated",
            "roomId": 1,
            "unreadCount": 3,
            "version": 9,
            "mentionCount": 1,
            "lastMessage": {"id": 5},
            "totalUnreadCount": 8,
            "roomUnreadCount": 3,
            "totalMentionCount": 2,
            "roomLevel": "all",
            "combines": ["chat-room-updated", "total-unread-count-updated"],
        },
        other_room,  # no badge frame of its room follows: left as it is
        other_total,
    ]
    assert "combines" not in room  # the published frame, shared by others, is not changed
