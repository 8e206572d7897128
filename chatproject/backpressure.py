"""Whether a connection's client keeps up, measured where daphne buffers what it cannot send.

daphne hands each frame to Twisted at once and `transport.write` never blocks, so a client
that stops reading grows the server's write buffer, not a queue we own: the consumer keeps
pulling from the channel layer and every frame piles up in Twisted. So before forwarding a
frame the consumer waits (`SlowClientGuard.wait_until_writable`) while that buffer holds more
than `CHAT_CONNECTION_WRITE_BUFFER_BYTES`; meanwhile new frames wait in the connection's
bounded, coalescing queue (`chatproject.connection_queue`), marked `behind`. A client still
behind after `CHAT_SLOW_CONSUMER_SECONDS`, or whose queue overflowed (it lost a chat message),
is closed with 4008 (`slow_consumer`) and resyncs from a snapshot when it reconnects.

"Buffered" is Twisted's buffer plus the socket's kernel send queue (SIOCOUTQ, on Linux), read
through daphne's protocol object (the ASGI `send` daphne gives is
`partial(server.handle_reply, protocol)`); under another server, or a test communicator, it
cannot be measured and only the queue's bound applies.
"""

import asyncio
import functools
import logging
import struct
import sys
import time
from typing import Any

from django.conf import settings

from chatproject.connection_queue import ConnectionQueue
from chatproject.metrics import CONNECTIONS_BEHIND, SLOW_CONSUMER_DISCONNECTS

logger = logging.getLogger(__name__)

SLOW_CONSUMER_CLOSE_CODE = 4008
if sys.platform == "linux":
    import fcntl
    import termios

    _SIOCOUTQ: int | None = termios.TIOCOUTQ  # bytes in a socket's send queue
else:
    _SIOCOUTQ = None
# How often a waiting consumer looks at its client's buffer again.
_POLL_SECONDS = 0.05


def daphne_protocol(send: Any) -> Any | None:
    """daphne's protocol object behind an ASGI `send`, if that is what `send` ends in.

    Middleware may wrap `send` (channels' session middleware keeps the inner one as
    `real_send` of the bound method's object); a few hops are followed, no more.
    """
    for _ in range(8):
        if isinstance(send, functools.partial):
            for argument in send.args:
                if hasattr(argument, "transport") and hasattr(argument, "sendClose"):
                    return argument
            send = send.func
        elif hasattr(send, "__self__") and hasattr(send.__self__, "real_send"):
            send = send.__self__.real_send
        else:
            return None
    return None


def pending_write_bytes(transport: Any) -> int | None:
    """Bytes written for this connection that the client has not taken yet (None: unknown):
    what Twisted holds, plus the socket's send queue in the kernel.

    The kernel part matters: Linux grows a socket's send buffer up to `tcp_wmem`'s maximum
    (4 MiB here) for a client that stopped reading, so Twisted alone would see nothing.
    """
    buffered = twisted_buffered(transport)
    if buffered is None:
        return None
    return buffered + kernel_send_queue(transport)


def twisted_buffered(transport: Any) -> int | None:
    """Bytes Twisted holds for this connection (None: not a Twisted transport)."""
    try:
        return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)
    except (AttributeError, TypeError):
        return None


def kernel_send_queue(transport: Any) -> int:
    """Bytes in the socket's send queue in the kernel (0 where that cannot be read)."""
    if _SIOCOUTQ is None:
        return 0
    try:
        answer = fcntl.ioctl(transport.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return 0
    return int(struct.unpack("i", answer)[0])


class SlowClientGuard:
    def __init__(self, *, send: Any, queue: ConnectionQueue | None) -> None:
        self._protocol = daphne_protocol(send)
        self._queue = queue
        self.closing = False

    @classmethod
    def for_consumer(cls, consumer: Any) -> "SlowClientGuard":
        queue_of = getattr(consumer.channel_layer, "connection_queue", None)
        queue = queue_of(consumer.channel_name) if queue_of is not None else None
        return cls(send=consumer.base_send, queue=queue)

    def _buffered(self) -> int | None:
        transport = getattr(self._protocol, "transport", None)
        if transport is None or getattr(transport, "disconnected", False):
            return None
        return pending_write_bytes(transport)

    async def wait_until_writable(self) -> str | None:
        """Return when the client can take another frame: None, or why it must be closed."""
        limit = int(getattr(settings, "CHAT_CONNECTION_WRITE_BUFFER_BYTES", 256 * 1024))
        patience = float(getattr(settings, "CHAT_SLOW_CONSUMER_SECONDS", 10.0))
        behind_since: float | None = None
        try:
            while True:
                if self._queue is not None and self._queue.overflowed:
                    return "queue_overflow"
                buffered = self._buffered()
                if buffered is None or buffered <= limit:
                    return None
                now = time.monotonic()
                if behind_since is None:
                    behind_since = now
                    CONNECTIONS_BEHIND.inc()
                    if self._queue is not None:
                        self._queue.behind = True
                elif now - behind_since > patience:
                    return "stalled"
                await asyncio.sleep(_POLL_SECONDS)
        finally:
            if behind_since is not None:
                CONNECTIONS_BEHIND.dec()
                if self._queue is not None:
                    self._queue.behind = False

    async def close_slow(self, consumer: Any, reason: str) -> None:
        """Close with 4008, once; what is still queued or buffered for it is dropped."""
        if self.closing:
            return
        self.closing = True
        if self._queue is not None:
            self._queue.discard()  # the client resyncs from a snapshot; nothing queued matters
        SLOW_CONSUMER_DISCONNECTS.labels(reason).inc()
        logger.warning(
            "closing slow connection of user %s (%s, %s bytes buffered)",
            getattr(consumer, "user_id", None),
            reason,
            self._buffered(),
        )
        if self._protocol is not None:
            # How long the closing handshake may take before autobahn drops the connection:
            # long enough for a client that reads again to get through what is buffered and
            # see the 4008 (autobahn's default is 1 s).
            grace = float(getattr(settings, "CHAT_SLOW_CONSUMER_CLOSE_GRACE_SECONDS", 10.0))
            timeout = getattr(self._protocol, "closeHandshakeTimeout", 0) or 0
            self._protocol.closeHandshakeTimeout = max(timeout, grace)
        await consumer.close(code=SLOW_CONSUMER_CLOSE_CODE)
