"""A lean WebSocket client for the load generator: the protocol's bare minimum, no library.

The `websockets` client costs tens of microseconds of Python per received frame (its reader
task, stream, frame objects, extension hooks); with 1,000 members badged at once, two client
processes on the same cores as the server took longer to read their frames than the server
took to send them. This one is an `asyncio.Protocol` that parses server frames (never masked)
in place from one buffer and hands each text message to a callback, and masks what it sends
with a zero key (RFC 6455 asks for a mask, not for a secret one; it is the same bytes). It
speaks exactly what the bench needs: text messages, ping, close; no extensions, no TLS.
"""

import asyncio
import base64
import os
from collections.abc import Callable
from urllib.parse import urlsplit

_ZERO_MASK = b"\x00\x00\x00\x00"


class LeanWebSocket(asyncio.Protocol):
    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.closed = False
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(
        cls, url: str, on_text: Callable[[str], None], open_timeout: float
    ) -> "LeanWebSocket":
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: cls(on_text), host, port), open_timeout
        )
        key = base64.b64encode(os.urandom(16)).decode()
        assert protocol.transport is not None
        protocol.transport.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        try:
            await asyncio.wait_for(asyncio.shield(protocol.handshake), open_timeout)
        except BaseException:
            protocol.transport.close()
            raise
        return protocol

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            del self.buffer[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                if not self.handshake.done():
                    self.handshake.set_exception(ConnectionError(status.decode(errors="replace")))
                self._abort()
                return
            self.upgraded = True
            self.handshake.set_result(None)
        self._parse()

    def _parse(self) -> None:
        buf, pos, size = self.buffer, 0, len(self.buffer)
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            self._frame(first & 0x0F, bool(first & 0x80), payload)
        del buf[:pos]

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode in (0, 1, 2):  # continuation, text, binary
            if not fin:
                self.fragments.append(payload)
                return
            if self.fragments:
                payload, self.fragments = b"".join([*self.fragments, payload]), []
            self.on_text(payload.decode())
        elif opcode == 8:  # close: answer it and drop the connection
            self._write(0x88, payload[:2])
            self._abort()
        elif opcode == 9:  # ping
            self._write(0x8A, payload)

    # --- what the bench calls ----------------------------------------------------------

    async def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionError("connection closed")
        self._write(0x81, text.encode())

    async def close(self) -> None:
        if not self.closed:
            self._write(0x88, (1000).to_bytes(2, "big"))
            self._abort()

    def _write(self, first: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        length = len(payload)
        if length < 126:
            header = bytes((first, 0x80 | length))
        elif length < 65536:
            header = bytes((first, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((first, 0x80 | 127)) + length.to_bytes(8, "big")
        self.transport.write(header + _ZERO_MASK + payload)

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
