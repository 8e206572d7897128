"""The outlet: the hub's frames written straight to daphne's transport, when a client keeps up.

For each member channel of a group the hub (chatproject/hub.py) received a message for,
`write` looks the channel up here (one dictionary lookup) and, for a `chat.frames` message,
writes the frames to the connection's daphne protocol object from the hub's own loop: no
per-member queue entry, task wake-up, decode or `json.dumps`. Each frame is encoded once with
orjson, as a whole WebSocket frame, and the bytes are shared by every member the same message
goes to (a room's `chat-message` is the same bytes for each viewer; a badge frame differs per
user anyway). A member's frames go out as one write, below autobahn's `sendMessage` (which
would check, count and log each frame) when nothing of its own is in use on the connection
(`takes_raw_frames`), and straight to the socket when Twisted holds nothing for it
(`_write_raw`): per member, one `send` system call and no reactor bookkeeping.

It writes only while that keeps every guarantee of the ordinary path:
- the connection's queue is empty and its consumer is waiting on it (idle, or handling a
  client frame), so a direct write never overtakes a frame queued or being forwarded;
- the queue is not behind or overflowed, and daphne plus the kernel hold no more than
  `CHAT_CONNECTION_WRITE_BUFFER_BYTES` for the client (chatproject/backpressure.py);
- the consumer decides, per frame, whether it is still fresh (`frame_is_fresh`: versions
  and stale-frame dropping stay in chat/consumers.py).
Otherwise `write` returns False and the hub queues the message on the channel's bounded,
coalescing queue (chatproject/connection_queue.py), which the consumer drains through its
generic dispatch: its slow-client guard and 4008 close apply as before. Any other message
type (`chat.close`, whatever a new feature adds) always goes that way.

The registry holds weak references only, so a connection that vanishes without its
disconnect handler leaves a dead entry that the next lookup drops.

Combined frames (`?frames=combined`, docs/protocol-extensions.md): `combine` merges a room
update with the badge frames about the same room that follow it, generically (every field is
kept, whatever it is), into one `chat-room-updated` frame listing what it `combines`.
"""

import logging
import struct
import time
import weakref
from typing import Any, Protocol

import orjson
from django.conf import settings

from chatproject.backpressure import daphne_protocol, kernel_send_queue, twisted_buffered
from chatproject.connection_queue import ConnectionQueue

logger = logging.getLogger(__name__)

Frame = dict[str, Any]

# What a combined frame is, and which frames fold into it: badge frames about its room.
_ROOM_UPDATE = "chat-room-updated"
_FOLDS_INTO_ROOM_UPDATE = frozenset({"total-unread-count-updated"})


class OutletConsumer(Protocol):
    channel_name: str
    frames_combined: bool
    base_send: Any

    def frame_is_fresh(self, frame: Frame) -> bool: ...


# How long a reading of the socket's kernel send queue stands in for it (see `_Writer`).
_KERNEL_READING_SECONDS = 1.0


class _Writer:
    __slots__ = ("_consumer", "_protocol", "_queue", "_limit", "_kernel", "_kernel_read_at")

    def __init__(self, consumer: OutletConsumer, protocol: Any, queue: ConnectionQueue) -> None:
        self._consumer = weakref.ref(consumer)
        self._protocol = weakref.ref(protocol)
        self._queue = queue
        self._limit = int(getattr(settings, "CHAT_CONNECTION_WRITE_BUFFER_BYTES", 256 * 1024))
        # The kernel's send queue as last read, plus what was written directly since: it can
        # only have shrunk from that (the client read some), unless the consumer sent frames
        # of its own (`wrote_elsewhere` drops the reading then; autobahn's pings are a few
        # bytes). Read again (an ioctl) once that bound passes half the limit, after such a
        # send, or when the reading is older than `_KERNEL_READING_SECONDS`: so fan-outs read
        # it about once a second per connection, not once per frame, and a client that stops
        # reading is still seen before the limit.
        self._kernel = 0
        self._kernel_read_at = float("-inf")

    def forget_kernel_reading(self) -> None:
        self._kernel_read_at = float("-inf")

    def _buffered(self, transport: Any) -> int | None:
        held = twisted_buffered(transport)
        if held is None:
            return None
        now = time.monotonic()
        if self._kernel > self._limit // 2 or now - self._kernel_read_at > _KERNEL_READING_SECONDS:
            self._kernel = kernel_send_queue(transport)
            self._kernel_read_at = now
        return held + self._kernel

    def write(self, message: dict[str, Any], encoded: dict[int, bytes]) -> bool | None:
        """True: written; False: take the ordinary path; None: this connection is gone."""
        if message.get("type") != "chat.frames":
            return False
        queue = self._queue
        if queue.overflowed or queue.behind or not queue.empty() or not queue.waited_on():
            return False
        consumer, protocol = self._consumer(), self._protocol()
        if consumer is None or protocol is None:
            return None
        if protocol.state != protocol.STATE_OPEN:
            return False
        buffered = self._buffered(protocol.transport)
        if buffered is None or buffered > self._limit:
            return False
        frames = [frame for frame in message["frames"] if consumer.frame_is_fresh(frame)]
        if consumer.frames_combined:
            frames = combine(frames)
        if not frames:
            return True
        try:
            if takes_raw_frames(protocol):
                data = b"".join([_framed(frame, encoded) for frame in frames])
                _write_raw(protocol.transport, data)
                self._kernel += len(data)
            else:
                for frame in frames:
                    data = _payload(frame, encoded)
                    protocol.sendMessage(data, False)
                    self._kernel += len(data)
        except Exception:
            # Closed under us: its frames no longer matter, it resyncs when it reconnects.
            logger.debug("direct write to %s failed", getattr(consumer, "channel_name", "?"))
        return True


def _payload(frame: Frame, encoded: dict[int, bytes]) -> bytes:
    if "combines" in frame:  # made for this member: nobody shares its bytes
        return orjson.dumps(frame)
    data = encoded.get(id(frame))
    if data is None:
        data = encoded[id(frame)] = orjson.dumps(frame)
    return data


def _framed(frame: Frame, encoded: dict[int, bytes]) -> bytes:
    """The frame as a whole unmasked WebSocket text frame, shared like its payload."""
    if "combines" in frame:
        return ws_text_frame(orjson.dumps(frame))
    key = ~id(frame)  # beside the payload's entry, never equal to an id
    data = encoded.get(key)
    if data is None:
        data = encoded[key] = ws_text_frame(_payload(frame, encoded))
    return data


def ws_text_frame(payload: bytes) -> bytes:
    """RFC 6455 section 5.2, server to client: FIN, opcode text, no mask, then the length."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def takes_raw_frames(protocol: Any) -> bool:
    """Whether whole frames may go to autobahn's transport as bytes, skipping `sendMessage`:
    nothing that `sendMessage` would change about them is in use on this connection (no
    per-message compression, no automatic fragmentation, no frame of autobahn's own half sent
    or queued), and the transport is plain TCP (Twisted's, not TLS)."""
    try:
        return (
            protocol._perMessageCompress is None
            and not protocol.autoFragmentSize
            and protocol.send_state == protocol.SEND_STATE_GROUND
            and not protocol.send_queue
            and protocol.transport.TLS is False
            and protocol.transport.socket is not None
        )
    except AttributeError:
        return False


def _write_raw(transport: Any, data: bytes) -> None:
    """Send `data` on the socket now when Twisted holds nothing for it, else append it to
    Twisted's buffer (so nothing overtakes what it holds). The socket is non-blocking: what
    the kernel does not take at once goes to Twisted's buffer, which sends it when writable.
    Sending now spares Twisted's write machinery (a writer registered with the reactor, an
    epoll change, a callback when writable and another epoll change) for every member."""
    if (
        transport._tempDataLen
        or len(transport.dataBuffer) > transport.offset
        or not transport.connected
        or transport.disconnecting
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        transport.write(data)  # Twisted meets the error itself and closes the connection
        return
    if sent < len(data):
        transport.write(data[sent:])


_writers: dict[str, _Writer] = {}


def attach(consumer: OutletConsumer, queue: ConnectionQueue | None) -> bool:
    """Let the hub write this connection's frames directly; False: it cannot (no daphne
    protocol behind its `send`, such as a test communicator, or no bounded queue)."""
    protocol = daphne_protocol(consumer.base_send)
    if protocol is None or queue is None or not hasattr(protocol, "sendMessage"):
        return False
    _writers[consumer.channel_name] = _Writer(consumer, protocol, queue)
    return True


def detach(channel_name: str) -> None:
    _writers.pop(channel_name, None)


def write(channel: str, message: dict[str, Any], encoded: dict[int, bytes]) -> bool:
    """Write `message`'s frames to `channel`'s client now; False: queue it instead.

    `encoded` maps frames (by id) to their bytes for the members of one group delivery: the
    caller keeps `message` alive meanwhile, so an id is never reused within it.
    """
    writer = _writers.get(channel)
    if writer is None:
        return False
    written = writer.write(message, encoded)
    if written is None:
        del _writers[channel]
        return False
    return written


def wrote_elsewhere(channel: str) -> None:
    """The consumer of `channel` sent a frame itself (through daphne): what the kernel holds
    for its client must be read again before the next direct write."""
    writer = _writers.get(channel)
    if writer is not None:
        writer.forget_kernel_reading()


def attached() -> int:
    """Connections of this process the hub writes to directly (for tests and metrics)."""
    return len(_writers)


def combine(frames: list[Frame]) -> list[Frame]:
    """Merge each room update with the badge frames about its room that follow it."""
    combined: list[Frame] = []
    for frame in frames:
        previous = combined[-1] if combined else None
        if (
            previous is not None
            and frame.get("type") in _FOLDS_INTO_ROOM_UPDATE
            and previous.get("type") == _ROOM_UPDATE
            and previous.get("roomId") == frame.get("roomId")
        ):
            if "combines" not in previous:
                previous = combined[-1] = {**previous, "combines": [_ROOM_UPDATE]}
            previous.update((key, value) for key, value in frame.items() if key != "type")
            previous["combines"].append(frame["type"])
        else:
            combined.append(frame)
    return combined
