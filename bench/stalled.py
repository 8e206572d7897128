"""Clients that stop reading, in a busy room: `.venv/bin/python -m bench.stalled`.

Reproduces issue 8's measurement: `--stalled` clients (raw sockets with a small receive buffer
that stop calling recv() after joining the room) and `--normal` clients that keep reading, in
one room that receives `--rate` messages/s of `--chars` characters for `--seconds`. Prints the
daphne process's RSS over time, the normal clients' badge latency (send → `chat-room-updated`
carrying that message), every client's close code, and the server's back-pressure metrics.
Afterwards every normal client must show the database's counts, and reconcile must find none
wrong. The server is one real daphne on SQLite and the embedded Redis, as `make run` has them.

chat/tests/test_slow_clients.py runs the same scenario, smaller, against the test database.
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "stalled-bench-pw"

# --- the server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for the database Django is using in this process (e.g. a test database)."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    user, host = settings_dict.get("USER") or "postgres", settings_dict.get("HOST") or "127.0.0.1"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


METRICS_TOKEN = secrets.token_urlsafe(16)


class Server:
    """One daphne process serving the project, with `env` on top of this process's."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.stalled_settings",
            "DJANGO_DEBUG": "0",
            # /metrics is private with DEBUG off: the bench reads it with this token.
            "METRICS_TOKEN": METRICS_TOKEN,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [*command, "chatproject.asgi:application"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("daphne did not listen within 60 s")

    def rss(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def kernel_send_queues(self) -> int:
        """Bytes waiting in the kernel's send queues of the server's sockets (memory too, and
        where a client that stops reading first piles up: up to 4 MiB a socket)."""
        listing = subprocess.run(
            ["ss", "-tnH", f"sport = :{self.port}"], capture_output=True, text=True, check=False
        ).stdout
        return sum(int(line.split()[2]) for line in listing.splitlines() if line.strip())

    def metrics(self) -> dict[str, float]:
        """GET /metrics, each sample by its name with labels."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- a client that stops reading --------------------------------------------------------


class StalledClient:
    """A raw WebSocket client: joins the room, then never calls recv() until `read_to_close`.

    A small SO_RCVBUF keeps the kernel from absorbing megabytes on its behalf, so the server
    sees a client that stopped reading within a second.
    """

    def __init__(self, port: int, token: str, receive_buffer: int = 4096) -> None:
        self.port, self.token = port, token
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.buffer = b""

    def open(self, room_id: int) -> None:
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/chat/?token={self.token} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"handshake refused: {head[:200]!r}")
        self._send(json.dumps({"type": "join-room", "roomId": room_id}).encode())
        while True:
            opcode, payload = self._frame()
            if opcode == 1 and json.loads(payload).get("type") == "joined-room":
                return

    def read_to_close(self) -> int | None:
        """Read everything the server sent until its close frame: the close code, or None when
        the connection ended without one (reset, or dropped before the client got there)."""
        self.sock.settimeout(30)
        try:
            while True:
                opcode, payload = self._frame()
                if opcode == 8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        except (OSError, EOFError):
            return None
        finally:
            self.sock.close()

    def _send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x81, 0x80 | length]) if length < 126 else bytes([0x81, 0xFE])
        if length >= 126:
            header += length.to_bytes(2, "big")
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        taken, self.buffer = self.buffer[:n], self.buffer[n:]
        return taken

    def _frame(self) -> tuple[int, bytes]:
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._take(2), "big")
        elif length == 127:
            length = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(length)


# --- clients that keep reading ----------------------------------------------------------


@dataclass
class NormalClient:
    """Reads every frame and shows what a client following the protocol would show."""

    token: str
    view_room: int | None = None
    total: int = 0
    version: int = 0
    rooms: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # time.monotonic() of each latency
    close_code: int | None = None
    frames: int = 0

    def apply(self, frame: dict[str, Any]) -> None:
        self.frames += 1
        kind = frame["type"]
        if kind == "unread-state" and frame["version"] >= self.version:
            self.total, self.version = frame["totalUnreadCount"], frame["version"]
            self.rooms = {room["roomId"]: room["unreadCount"] for room in frame["rooms"]}
        elif kind == "chat-room-updated":
            self.rooms[frame["roomId"]] = frame["unreadCount"]
            sent_ns = _sent_ns(frame["lastMessage"]["body"])
            if sent_ns:
                self.latencies_ms.append((time.time_ns() - sent_ns) / 1e6)
                self.received_at.append(time.monotonic())
        elif kind == "total-unread-count-updated" and frame["version"] > self.version:
            self.total, self.version = frame["totalUnreadCount"], frame["version"]
            self.rooms[frame["roomId"]] = frame["roomUnreadCount"]

    async def run(self, port: int, ready: asyncio.Event, stop: asyncio.Event) -> None:
        uri = f"ws://127.0.0.1:{port}/ws/chat/?token={self.token}"
        async with connect(uri, max_size=None, ping_interval=None, open_timeout=30) as ws:
            self.apply(json.loads(await ws.recv()))
            if self.view_room is not None:
                await ws.send(json.dumps({"type": "join-room", "roomId": self.view_room}))
            ready.set()
            reader = asyncio.ensure_future(self._read(ws))
            await stop.wait()
            reader.cancel()
            self.close_code = ws.close_code

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self.apply(json.loads(message))
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else 1006


def _body(chars: int) -> str:
    stamp = f"{time.time_ns()} "
    return stamp + "x" * max(0, chars - len(stamp))


def _sent_ns(body: str) -> int:
    head = body.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


async def send_messages(
    port: int, token: str, room_id: int, *, rate: float, seconds: float, chars: int, tag: str = "s"
) -> int:
    """Send at `rate` messages/s without waiting for each reply; returns how many were sent."""
    uri = f"ws://127.0.0.1:{port}/ws/chat/?token={token}"
    sent = 0
    async with connect(uri, max_size=None, ping_interval=None, open_timeout=30) as ws:
        await ws.recv()
        replies = asyncio.ensure_future(_count_replies(ws))
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                frame = {
                    "type": "send-message",
                    "roomId": room_id,
                    "message": _body(chars),
                    "clientMessageId": f"{tag}{sent}",
                }
                await ws.send(json.dumps(frame))
                sent += 1
            await asyncio.sleep(max(0.0, (sent / rate) - (time.monotonic() - start)))
        # Every send answered: the messages are saved before the run is judged.
        for _ in range(300):
            if replies.done() or _replies_seen[0] >= sent:
                break
            await asyncio.sleep(0.1)
        replies.cancel()
    return sent


_replies_seen = [0]


async def _count_replies(ws: ClientConnection) -> None:
    _replies_seen[0] = 0
    async for message in ws:
        if json.loads(message).get("type") in {"message-sent", "error"}:
            _replies_seen[0] += 1


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


# --- the scenario -----------------------------------------------------------------------


@dataclass
class Roster:
    room_id: int
    sender: str
    stalled: list[str]
    normal: list[tuple[int, str]]  # (user id, token)


def seed_roster(*, stalled: int, normal: int, tag: str = "s") -> Roster:
    """Users, tokens and one busy room (needs the database; the rate limit is the server's)."""
    from django.contrib.auth import get_user_model

    from chat.models import Room
    from chat.services import room_add_member
    from chat.tokens import token_create

    def user(name: str) -> tuple[int, str]:
        person = get_user_model().objects.create_user(username=name, password=PASSWORD)
        token, _ = token_create(username=name, password=PASSWORD)
        return person.pk, token

    sender = user(f"{tag}-sender")
    stalled_users = [user(f"{tag}-stalled{i}") for i in range(stalled)]
    normal_users = [user(f"{tag}-normal{i}") for i in range(normal)]
    room = Room.objects.create(name=f"{tag}-busy")
    for user_id, _ in [sender, *stalled_users, *normal_users]:
        room_add_member(room_id=room.pk, user_id=user_id)
    return Roster(room.pk, sender[1], [t for _, t in stalled_users], normal_users)


@dataclass
class Outcome:
    sent: int
    rss_mib: list[tuple[float, float]]  # (seconds since start, daphne RSS in MiB)
    stalled_close_codes: list[int | None]
    normal: list[NormalClient]
    metrics: dict[str, float]
    # Per normal client, how many of its latencies came from the baseline phase.
    baseline_counts: list[int] = field(default_factory=list)
    kernel_send_queues_mib: list[float] = field(default_factory=list)  # beside each RSS sample

    def badge_p99_ms(self) -> float:
        """The normal clients' badge p99 while the stalled clients were there."""
        skip = self.baseline_counts or [0] * len(self.normal)
        return _p99([v for c, n in zip(self.normal, skip, strict=True) for v in c.latencies_ms[n:]])

    def p99_by_window(self, seconds: float = 5.0) -> list[tuple[float, float, int]]:
        """(window start since the first badge, p99 ms, badges) per `seconds` window."""
        pairs = sorted(
            (at, ms)
            for c in self.normal
            for at, ms in zip(c.received_at, c.latencies_ms, strict=True)
        )
        if not pairs:
            return []
        windows: dict[int, list[float]] = {}
        for at, ms in pairs:
            windows.setdefault(int((at - pairs[0][0]) // seconds), []).append(ms)
        return [(k * seconds, _p99(v), len(v)) for k, v in sorted(windows.items())]

    def baseline_p99_ms(self) -> float:
        """The same, in the baseline phase before any client stalled (NaN without one)."""
        skip = self.baseline_counts or [0] * len(self.normal)
        return _p99([v for c, n in zip(self.normal, skip, strict=True) for v in c.latencies_ms[:n]])

    def close_codes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for code in [*self.stalled_close_codes, *(c.close_code for c in self.normal)]:
            counts[str(code)] = counts.get(str(code), 0) + 1
        return counts


async def run_scenario(
    server: Server,
    roster: Roster,
    *,
    rate: float,
    seconds: float,
    chars: int,
    viewers: int = 0,
    baseline_seconds: float = 0.0,
    progress: Any = None,
) -> Outcome:
    """Normal clients in the busy room while one sender sends, first alone for
    `baseline_seconds`, then with the stalled clients; each stalled client reads up to its
    close frame once the server reports it closed them all (or the run ends)."""
    started = time.monotonic()
    rss: list[tuple[float, float]] = [(0.0, server.rss() / 2**20)]
    kernel: list[float] = [server.kernel_send_queues() / 2**20]
    stalled = [StalledClient(server.port, token) for token in roster.stalled]
    normal = [
        NormalClient(token, view_room=roster.room_id if i < viewers else None)
        for i, (_, token) in enumerate(roster.normal)
    ]
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in normal]
    tasks = [
        asyncio.ensure_future(c.run(server.port, r, stop))
        for c, r in zip(normal, readies, strict=True)
    ]
    for ready in readies:
        await asyncio.wait_for(ready.wait(), 60)

    async def sample() -> None:
        while True:
            await asyncio.sleep(1)
            rss.append((time.monotonic() - started, server.rss() / 2**20))
            kernel.append(await asyncio.to_thread(server.kernel_send_queues) / 2**20)
            if progress is not None:
                progress((*rss[-1], kernel[-1]))

    async def read_stalled_once_closed() -> list[int | None]:
        # A stalled client cannot tell it was closed without reading, and the server drops the
        # connection CHAT_SLOW_CONSUMER_CLOSE_GRACE_SECONDS after its close frame: so they read
        # again as soon as the server counts them all closed (they stalled together), or at
        # the end of the run.
        while not sending.done():
            if await asyncio.to_thread(_slow_disconnects, server) >= len(stalled):
                break
            await asyncio.sleep(0.5)
        return list(await asyncio.gather(*(asyncio.to_thread(c.read_to_close) for c in stalled)))

    sampler = asyncio.ensure_future(sample())
    baseline_counts: list[int] = []
    if baseline_seconds > 0:
        await send_messages(
            server.port,
            roster.sender,
            roster.room_id,
            rate=rate,
            seconds=baseline_seconds,
            chars=chars,
            tag="b",
        )
        await _settle(normal, roster)
        baseline_counts = [len(client.latencies_ms) for client in normal]
    await asyncio.gather(*(asyncio.to_thread(c.open, roster.room_id) for c in stalled))
    sending = asyncio.ensure_future(
        send_messages(
            server.port, roster.sender, roster.room_id, rate=rate, seconds=seconds, chars=chars
        )
    )
    closing = asyncio.ensure_future(read_stalled_once_closed())
    sent = await sending
    codes = await closing
    await _settle(normal, roster)
    sampler.cancel()
    rss.append((time.monotonic() - started, server.rss() / 2**20))
    metrics = await asyncio.to_thread(server.metrics)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Outcome(sent, rss, list(codes), normal, metrics, baseline_counts, kernel)


def _slow_disconnects(server: Server) -> float:
    return sum(
        value
        for name, value in server.metrics().items()
        if name.startswith("slow_consumer_disconnects_total")
    )


async def _settle(normal: list[NormalClient], roster: Roster, seconds: float = 30) -> None:
    """Wait until every normal client shows the database's total (or `seconds` pass)."""
    from asgiref.sync import sync_to_async

    from badges.selectors import unread_counts_for_users

    ids = [user_id for user_id, _ in roster.normal]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        truth = await sync_to_async(unread_counts_for_users)(ids)
        if all(
            client.total == sum(unread for _, unread in truth[user_id].values())
            for client, user_id in zip(normal, ids, strict=True)
        ):
            return
        await asyncio.sleep(0.5)


# --- the command ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stalled", type=int, default=50)
    parser.add_argument("--normal", type=int, default=20)
    parser.add_argument("--viewers", type=int, default=5, help="normal clients viewing the room")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chars", type=int, default=500)
    parser.add_argument(
        "--baseline-seconds", type=float, default=20.0, help="first, the same without stalled"
    )
    args = parser.parse_args()

    (ROOT / ".run").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="stalled-", dir=ROOT / ".run"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stalled_settings")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    os.environ["REDIS_KEY_PREFIX"] = f"stalled-{workdir.name}"
    import django

    django.setup()  # starts the embedded Redis unless REDIS_URL is set; children inherit it
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    roster = seed_roster(stalled=args.stalled, normal=args.normal)
    server = Server({"REDIS_URL": settings.REDIS_URL}, workdir / "daphne.log")
    server.start()
    try:
        outcome = asyncio.run(
            run_scenario(
                server,
                roster,
                rate=args.rate,
                seconds=args.seconds,
                chars=args.chars,
                viewers=args.viewers,
                baseline_seconds=args.baseline_seconds,
                progress=lambda s: print(
                    f"  t={s[0]:5.1f}s daphne RSS {s[1]:6.1f} MiB, kernel send queues "
                    f"{s[2]:6.1f} MiB",
                    flush=True,
                ),
            )
        )
    finally:
        server.stop()
    _print(outcome, args)


def _print(outcome: Outcome, args: argparse.Namespace) -> None:
    from io import StringIO

    from django.core.management import call_command

    rss = [value for _, value in outcome.rss_mib]
    print(f"\n{args.stalled} stalled + {args.normal} normal clients ({args.viewers} viewing),")
    print(
        f"{outcome.sent} messages of {args.chars} chars at {args.rate}/s for {args.seconds} s "
        "with the stalled clients"
    )
    print(f"daphne RSS: start {rss[0]:.1f} MiB, max {max(rss):.1f} MiB, end {rss[-1]:.1f} MiB")
    kernel = outcome.kernel_send_queues_mib
    print(f"its sockets' kernel send queues: max {max(kernel):.1f} MiB, end {kernel[-1]:.1f} MiB")
    print(
        f"normal clients' badge p99: {outcome.badge_p99_ms():.1f} ms with the stalled clients, "
        f"{outcome.baseline_p99_ms():.1f} ms in the {args.baseline_seconds:g} s before them"
    )
    print(f"close codes (None: still open or no close frame): {outcome.close_codes()}")
    print("badge p99 by 5 s window (since the first badge):")
    for start, p99, count in outcome.p99_by_window():
        print(f"  {start:5.0f}s  p99 {p99:9.1f} ms  ({count} badges)")
    for name, value in sorted(outcome.metrics.items()):
        if name.startswith(
            ("slow_consumer", "connection_", "connections_behind", "lane_", "fanout_failures")
        ):
            print(f"  {name} {value:g}")
    out = StringIO()
    call_command("reconcile_unread_counts", "--dry-run", "--json", stdout=out)
    print(f"reconcile --dry-run: {out.getvalue().strip()}")


if __name__ == "__main__":
    main()
