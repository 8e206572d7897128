"""WebSocket client processes: each holds many connections and records when frames arrive.

Clients run in their own processes (not the server's, not the coordinator's), driven by the
coordinator through a pipe. Every send is stamped with `time.perf_counter_ns()` just before the
frame leaves, and the stamp travels in the message body ("bench <ns>"), so any recipient, in
any client process, can tell the latency: on Linux perf_counter is CLOCK_MONOTONIC, one clock
for every process on the host.

A `total-unread-count-updated` does not name the message that caused it. It is paired with the
`chat-room-updated` of the same room that arrived last on the same connection: the product
sends both in one batch per user, room update first, and the baseline sends a user's badge
only after that user's room update of the same message.
"""

import asyncio
import json
import multiprocessing
import multiprocessing.connection
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import websockets

from bench.leanclient import LeanWebSocket

# (kind, room id, send ns, arrival ns); kind is badge, room, echo (chat-message) or ack.
Sample = tuple[str, int, int, int]
CONNECT_TIMEOUT = 30.0


def send_ns_of(body: str) -> int:
    parts = body.split()
    return int(parts[1]) if len(parts) > 1 and parts[0] == "bench" and parts[1].isdigit() else 0


@dataclass
class Conn:
    user_id: int
    url: str
    join_room: int | None
    ws: Any = None
    reader: "asyncio.Task[None] | None" = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    last_update: dict[int, int] = field(default_factory=dict)
    acks: dict[str, "asyncio.Future[None]"] = field(default_factory=dict)


class ClientProcess:
    def __init__(self, index: int, lean: bool = True) -> None:
        self.index = index
        self.lean = lean
        self.conns: dict[int, Conn] = {}
        self.samples: list[Sample] = []
        self.sent: list[tuple[int, int]] = []
        self.unpaired = 0
        self.errors: list[str] = []
        self.timeouts = 0
        self.ordinal = 0

    # --- commands from the coordinator -------------------------------------------------

    async def cmd_connect(self, users: list[tuple[int, str, int | None]]) -> int:
        """users: (user id, URL with token, room to join or None). Returns open connections."""
        gate = asyncio.Semaphore(20)

        async def one(user_id: int, url: str, join_room: int | None) -> None:
            async with gate:
                conn = Conn(user_id, url, join_room)
                self.conns[user_id] = conn
                await self._open(conn)

        await asyncio.gather(*(one(*user) for user in users))
        return sum(1 for conn in self.conns.values() if conn.ws is not None)

    async def cmd_open_loop(
        self,
        senders: list[tuple[int, int]],
        rate: float,
        duration: float,
        churn_every: float = 0.0,
        churn_count: int = 0,
    ) -> int:
        """Send `rate` messages/s for `duration` s round-robin over (user, room) senders."""
        total = int(rate * duration)
        if not senders or total <= 0:
            return 0
        churn = None
        if churn_every > 0 and churn_count > 0:
            keep = {user_id for user_id, _ in senders}
            churn = asyncio.create_task(self._churn(keep, churn_every, churn_count, duration))
        interval = 1.0 / rate
        started = time.perf_counter()
        late = 0
        for k in range(total):
            delay = started + k * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            user_id, room_id = senders[k % len(senders)]
            await self._send(user_id, room_id)
        if churn is not None:
            await churn
        return late

    async def cmd_closed_loop(
        self, senders: list[tuple[int, int]], count: int, gap: float, ack_timeout: float
    ) -> int:
        """Each sender sends `count` messages, each after the previous `message-sent` + gap."""

        async def one(user_id: int, room_id: int) -> None:
            for _ in range(count):
                future = await self._send(user_id, room_id, wait=True)
                try:
                    await asyncio.wait_for(future, ack_timeout)  # type: ignore[arg-type]
                except TimeoutError:
                    self.timeouts += 1
                await asyncio.sleep(gap)

        await asyncio.gather(*(one(*sender) for sender in senders))
        return count * len(senders)

    async def cmd_collect(self) -> dict[str, Any]:
        out = {
            "samples": self.samples,
            "sent": self.sent,
            "unpaired": self.unpaired,
            "errors": self.errors[:20],
            "error_count": len(self.errors),
            "timeouts": self.timeouts,
            "open": sum(1 for conn in self.conns.values() if conn.ws is not None),
        }
        self.samples, self.sent, self.errors = [], [], []
        self.unpaired = self.timeouts = 0
        return out

    async def cmd_close(self) -> None:
        await asyncio.gather(*(self._close(conn) for conn in self.conns.values()))

    # --- connections --------------------------------------------------------------------

    async def _open(self, conn: Conn, attempts: int = 3) -> None:
        """Connect (and join); a loaded server may refuse a handshake: retry a few times."""
        for attempt in range(attempts):
            if await self._open_once(conn, last=attempt == attempts - 1):
                return
            await asyncio.sleep(1.0 + attempt)

    async def _open_once(self, conn: Conn, last: bool) -> bool:
        conn.ready.clear()
        conn.joined.clear()
        conn.last_update.clear()
        try:
            if self.lean:
                conn.ws = await LeanWebSocket.connect(
                    conn.url,
                    lambda raw: self._on_frame(conn, raw, time.perf_counter_ns()),
                    CONNECT_TIMEOUT,
                )
                return await self._ready_and_joined(conn)
            conn.ws = await websockets.connect(
                conn.url,
                compression=None,
                ping_interval=None,
                max_size=2**22,
                open_timeout=CONNECT_TIMEOUT,
                close_timeout=2,
            )
            conn.reader = asyncio.create_task(self._read(conn))
            return await self._ready_and_joined(conn)
        except (OSError, TimeoutError, websockets.WebSocketException) as error:
            if last:
                self.errors.append(f"connect user {conn.user_id}: {error!r}")
            await self._close(conn)
            return False

    async def _ready_and_joined(self, conn: Conn) -> bool:
        await asyncio.wait_for(conn.ready.wait(), CONNECT_TIMEOUT)
        if conn.join_room is not None:
            await conn.ws.send(json.dumps({"type": "join-room", "roomId": conn.join_room}))
            await asyncio.wait_for(conn.joined.wait(), CONNECT_TIMEOUT)
        return True

    async def _close(self, conn: Conn) -> None:
        ws, conn.ws = conn.ws, None
        if ws is not None:
            await ws.close()
        if conn.reader is not None:
            conn.reader.cancel()
            conn.reader = None

    async def _churn(self, keep: set[int], every: float, count: int, duration: float) -> None:
        """Close and reopen `count` non-sending connections every `every` s: listener leaks."""
        pool = [conn for user_id, conn in self.conns.items() if user_id not in keep]
        if not pool:
            return
        deadline = time.perf_counter() + duration
        turn = 0
        while time.perf_counter() + every < deadline:
            await asyncio.sleep(every)
            for _ in range(count):
                conn = pool[turn % len(pool)]
                turn += 1
                await self._close(conn)
                await self._open(conn)

    async def _send(
        self, user_id: int, room_id: int, wait: bool = False
    ) -> "asyncio.Future[None] | None":
        conn = self.conns[user_id]
        self.ordinal += 1
        sent_ns = time.perf_counter_ns()
        client_message_id = f"{self.index}-{self.ordinal}-{sent_ns}"
        future: asyncio.Future[None] | None = None
        if wait:
            future = asyncio.get_running_loop().create_future()
            conn.acks[client_message_id] = future
        if conn.ws is None:
            self.errors.append(f"send on closed connection of user {user_id}")
            return future
        frame = {
            "type": "send-message",
            "roomId": room_id,
            "message": f"bench {sent_ns}",
            "clientMessageId": client_message_id,
        }
        await conn.ws.send(json.dumps(frame))
        self.sent.append((room_id, sent_ns))
        return future

    async def _read(self, conn: Conn) -> None:
        ws = conn.ws
        try:
            async for raw in ws:
                self._on_frame(conn, raw, time.perf_counter_ns())
        except websockets.ConnectionClosed:
            pass

    def _on_frame(self, conn: Conn, raw: str | bytes, now: int) -> None:
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind == "total-unread-count-updated":
            room_id = frame["roomId"]
            sent_ns = conn.last_update.pop(room_id, 0)
            if sent_ns:
                self.samples.append(("badge", room_id, sent_ns, now))
            else:
                self.unpaired += 1
        elif kind == "chat-room-updated":
            room_id = frame["roomId"]
            sent_ns = send_ns_of(frame["lastMessage"]["body"])
            if sent_ns:
                self.samples.append(("room", room_id, sent_ns, now))
                if "total-unread-count-updated" in frame.get("combines", ()):
                    # ?frames=combined: the badge came in the same frame.
                    self.samples.append(("badge", room_id, sent_ns, now))
                else:
                    conn.last_update[room_id] = sent_ns
        elif kind == "chat-message":
            sent_ns = send_ns_of(frame["message"]["body"])
            if sent_ns:
                self.samples.append(("echo", frame["roomId"], sent_ns, now))
        elif kind == "message-sent":
            client_message_id = frame["clientMessageId"]
            self.samples.append(
                ("ack", frame["roomId"], int(client_message_id.rsplit("-", 1)[1]), now)
            )
            future = conn.acks.pop(client_message_id, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == "unread-state":
            conn.ready.set()
        elif kind == "joined-room":
            conn.joined.set()
        elif kind == "error":
            self.errors.append(f"user {conn.user_id}: {raw!r}"[:300])
            future = conn.acks.pop(str(frame.get("ref")), None)
            if future is not None and not future.done():
                future.set_result(None)


def _worker_main(pipe: multiprocessing.connection.Connection, index: int, lean: bool) -> None:
    asyncio.run(_serve(pipe, index, lean))


async def _serve(pipe: multiprocessing.connection.Connection, index: int, lean: bool) -> None:
    client = ClientProcess(index, lean)
    loop = asyncio.get_running_loop()
    while True:
        try:
            command, payload = await loop.run_in_executor(None, pipe.recv)
        except EOFError:  # the coordinator is gone
            command, payload = "stop", {}
        if command == "stop":
            await client.cmd_close()
            return
        try:
            pipe.send(("ok", await getattr(client, f"cmd_{command}")(**payload)))
        except Exception:
            pipe.send(("error", traceback.format_exc()))


class ClientPool:
    """The coordinator's handle on the client processes; users are spread round-robin."""

    def __init__(self, processes: int, lean: bool = True) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        self.owner: dict[int, int] = {}
        for index in range(processes):
            parent, child = context.Pipe()
            proc = context.Process(target=_worker_main, args=(child, index, lean), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def assign(self, user_ids: list[int]) -> None:
        for user_id in user_ids:
            if user_id not in self.owner:
                self.owner[user_id] = len(self.owner) % len(self.pipes)

    def call(self, payloads: list[tuple[str, dict[str, Any]] | None], timeout: float) -> list[Any]:
        """Send each process its command (None: skip it) and wait for every answer."""
        for pipe, payload in zip(self.pipes, payloads, strict=True):
            if payload is not None:
                pipe.send(payload)
        results: list[Any] = []
        deadline = time.monotonic() + timeout
        for pipe, payload in zip(self.pipes, payloads, strict=True):
            if payload is None:
                results.append(None)
                continue
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"client process did not answer {payload[0]} in {timeout} s")
            status, value = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"client process failed on {payload[0]}:\n{value}")
            results.append(value)
        return results

    def by_owner(self, items: list[Any], user_of: Any) -> list[list[Any]]:
        groups: list[list[Any]] = [[] for _ in self.pipes]
        for item in items:
            groups[self.owner[user_of(item)]].append(item)
        return groups

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop", {}))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
