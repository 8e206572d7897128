"""The outlet (chatproject/outlet.py): frames written straight to daphne's protocol object when
the client keeps up, the consumer's queue otherwise; and combined frames.

daphne's protocol is stood in for by an object with the attributes the outlet reads (its
state, Twisted's buffer counters, `sendMessage`); the real one is exercised by the process
tests (test_slow_clients.py, test_combined_frames.py)."""

import asyncio
import collections
import functools
import socket
import struct
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


# The raw path: whole WebSocket frames written below autobahn, on a real socket.


class _TwistedTransport:
    """The attributes of Twisted's TCP transport the raw path reads, over a real socket."""

    TLS = False

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.connected = 1
        self.disconnecting = 0
        self.written: list[bytes] = []  # what went through Twisted's `write`

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self._tempDataLen += len(data)

    def fileno(self) -> int:
        return self.socket.fileno()


class _RawProtocol(_Protocol):
    SEND_STATE_GROUND = 0

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.transport = _TwistedTransport(sock)  # type: ignore[assignment]
        self._perMessageCompress = None
        self.autoFragmentSize = 0
        self.send_state = self.SEND_STATE_GROUND
        self.send_queue: collections.deque[Any] = collections.deque()


def _read_frames(data: bytes) -> list[bytes]:
    """Split server-to-client WebSocket frames: each must be a final, unmasked text frame."""
    payloads = []
    while data:
        assert data[0] == 0x81 and not data[1] & 0x80
        size, at = data[1], 2
        if size == 126:
            size, at = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, at = struct.unpack("!Q", data[2:10])[0], 10
        payloads.append(data[at : at + size])
        data = data[at + size :]
    return payloads


def _receive_all(peer: socket.socket) -> bytes:
    peer.setblocking(False)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.fixture
def socket_pair() -> Any:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    yield ours, peer
    ours.close()
    peer.close()


def _raw_consumer(channel_name: str, sock: socket.socket) -> Any:
    consumer = _consumer(channel_name)
    consumer.protocol = _RawProtocol(sock)
    consumer.base_send = functools.partial(_reply, consumer.protocol)
    return consumer


@pytest.mark.parametrize("size", [10, 125, 126, 65535, 65536])
def test_ws_text_frame_lengths(size: int) -> None:
    payload = b"x" * size
    assert _read_frames(outlet.ws_text_frame(payload)) == [payload]


async def test_a_members_frames_go_to_the_socket_as_one_write_of_whole_frames(
    socket_pair: Any,
) -> None:
    ours, peer = socket_pair
    consumers = [_raw_consumer(f"raw{i}", ours) for i in range(2)]
    waits = []
    for consumer in consumers:
        queue, getter = await _idle_queue()
        waits.append(getter)
        assert outlet.attach(consumer, queue)
    message, encoded = _frames(10), dict[int, bytes]()
    try:
        for consumer in consumers:
            assert outlet.write(consumer.channel_name, message, encoded)
            assert consumer.protocol.transport.written == []  # nothing left to Twisted
            assert consumer.protocol.sent == []  # nor to autobahn's sendMessage
        frames = [orjson.loads(p) for p in _read_frames(_receive_all(peer))]
        assert frames == message["frames"] * 2
        # Each frame was framed once and its bytes shared by both members.
        framed = [data for data in encoded.values() if data[0] == 0x81]
        assert len(framed) == 2
    finally:
        for consumer, getter in zip(consumers, waits, strict=True):
            outlet.detach(consumer.channel_name)
            getter.cancel()


async def test_bytes_twisted_holds_are_never_overtaken(socket_pair: Any) -> None:
    ours, peer = socket_pair
    consumer = _raw_consumer("held", ours)
    transport = consumer.protocol.transport
    transport.write(b"earlier frame")  # Twisted holds these until the socket is writable
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    try:
        assert outlet.write("held", _frames(10), {})
        assert _receive_all(peer) == b""  # nothing went around Twisted's buffer
        assert transport.written[0] == b"earlier frame"
        assert [orjson.loads(p)["type"] for p in _read_frames(transport.written[1])] == [
            "chat-room-updated",
            "total-unread-count-updated",
        ]
    finally:
        outlet.detach("held")
        getter.cancel()


async def test_what_the_kernel_does_not_take_goes_to_twisted_in_order(socket_pair: Any) -> None:
    ours, peer = socket_pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    consumer = _raw_consumer("full", ours)
    consumer.protocol.transport.dataBuffer = b""
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    big = {"type": "chat.frames", "frames": [{"type": "chat-message", "body": "y" * 200_000}]}
    try:
        assert outlet.write("full", big, {})
        direct = _receive_all(peer)
        rest = b"".join(consumer.protocol.transport.written)
        assert direct and rest  # part sent at once, the rest left to Twisted
        assert [orjson.loads(p) for p in _read_frames(direct + rest)] == big["frames"]
    finally:
        outlet.detach("full")
        getter.cancel()


async def test_a_connection_with_compression_goes_through_send_message(socket_pair: Any) -> None:
    ours, peer = socket_pair
    consumer = _raw_consumer("deflate", ours)
    consumer.protocol._perMessageCompress = object()  # permessage-deflate negotiated
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    try:
        assert outlet.write("deflate", _frames(10), {})
        assert _receive_all(peer) == b""
        assert consumer.protocol.sent == [orjson.dumps(f) for f in _frames(10)["frames"]]
    finally:
        outlet.detach("deflate")
        getter.cancel()


async def test_a_client_that_stops_reading_is_queued_for_before_the_limit(
    socket_pair: Any, settings: Any
) -> None:
    """The kernel's send queue counts, though the outlet reads it only now and then: direct
    writes stop once what the client has not taken would pass the limit."""
    settings.CHAT_CONNECTION_WRITE_BUFFER_BYTES = 64 * 1024
    ours, peer = socket_pair  # the peer never reads
    consumer = _raw_consumer("stalled", ours)
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    message = {"type": "chat.frames", "frames": [{"type": "chat-message", "body": "z" * 4000}]}
    size = len(outlet.ws_text_frame(orjson.dumps(message["frames"][0])))
    try:
        written = 0
        while outlet.write("stalled", message, {}):
            written += 1
            assert written < 1000, "never refused"
        assert consumer.protocol.transport.written == []  # the kernel took every write
        assert 32 * 1024 < written * size <= 64 * 1024 + size
    finally:
        outlet.detach("stalled")
        getter.cancel()


async def test_frames_the_consumer_sent_itself_count_before_the_next_direct_write(
    socket_pair: Any, settings: Any
) -> None:
    settings.CHAT_CONNECTION_WRITE_BUFFER_BYTES = 64 * 1024
    ours, peer = socket_pair  # the peer never reads
    consumer = _raw_consumer("mixed", ours)
    queue, getter = await _idle_queue()
    outlet.attach(consumer, queue)
    try:
        assert outlet.write("mixed", _frames(1), {})  # the kernel's queue read: almost empty
        ours.sendall(b"h" * (70 * 1024))  # a history page the consumer sent through daphne
        outlet.wrote_elsewhere("mixed")
        assert not outlet.write("mixed", _frames(2), {})  # 70 KiB held: past the limit
    finally:
        outlet.detach("mixed")
        getter.cancel()
