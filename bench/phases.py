"""The benchmark's phases, run against one stack in one call.

compare  the product and the sequential baseline, same room shape, one message at a time
load     open-loop rate steps over the load rooms until badge p99 passes the limit
soak     a steady rate with connection churn while the server's RSS is sampled
fanout   one message at a time into rooms of 2 … 1,000 members: when is the last one badged
"""

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cpu
from bench.clients import ClientPool, Sample
from bench.stack import Stack
from bench.stats import latencies, push_latencies, sends_in, summarize

P99_LIMIT_MS = 50.0


@dataclass
class Plan:
    clients: int
    room_size: int
    fanout: list[int]
    compare_rooms: int
    compare_members: int

    def users(self) -> list[str]:
        load = [f"u{i}" for i in range(1, max(self.clients, max(self.fanout, default=0)) + 1)]
        compare = [
            f"{kind}{k}-{j}"
            for kind in ("c", "b")
            for k in range(self.compare_rooms)
            for j in range(self.compare_members)
        ]
        return load + compare + [f"probe{j}" for j in range(5)]

    def rooms(self) -> list[dict[str, Any]]:
        rooms = [
            {"name": f"load-{k}", "members": [f"u{i}" for i in range(k * s + 1, k * s + s + 1)]}
            for s in [self.room_size]
            for k in range(self.clients // s)
        ]
        rooms += [
            {"name": f"fan-{n}", "members": [f"u{i}" for i in range(1, n + 1)]} for n in self.fanout
        ]
        for kind in ("c", "b"):
            rooms += [
                {
                    "name": f"{kind}-{k}",
                    "members": [f"{kind}{k}-{j}" for j in range(self.compare_members)],
                }
                for k in range(self.compare_rooms)
            ]
        rooms.append({"name": "probe", "members": [f"probe{j}" for j in range(5)]})
        return rooms


@dataclass
class Bench:
    plan: Plan
    stack: Stack
    pool: ClientPool
    seeded: dict[str, Any]
    results_dir: Path
    samples: list[Sample] = field(default_factory=list)
    sent: list[tuple[int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    # "combined": product clients ask for one frame per room update (--frames combined).
    frames: str = "default"

    def uid(self, name: str) -> int:
        return int(self.seeded["users"][name][0])

    def room(self, name: str) -> int:
        return int(self.seeded["rooms"][name])

    def connect(self, names: list[str], path: str, join: dict[str, str] | None = None) -> int:
        join = join or {}
        users = [
            (
                self.uid(name),
                f"ws://127.0.0.1:{self.stack.port_for(self.uid(name))}{path}"
                f"?token={self.seeded['users'][name][1]}"
                + ("&frames=combined" if self.frames == "combined" and path == "/ws/chat/" else ""),
                self.room(join[name]) if name in join else None,
            )
            for name in names
        ]
        self.pool.assign([user[0] for user in users])
        groups = self.pool.by_owner(users, lambda user: user[0])
        opened = self.pool.call([("connect", {"users": group}) for group in groups], timeout=300)
        self.collect()
        return sum(opened)

    def collect(self) -> None:
        for part in self.pool.call([("collect", {})] * len(self.pool.pipes), timeout=120):
            self.samples += part["samples"]
            self.sent += part["sent"]
            self.errors += part["errors"]
            self.error_count += part["error_count"] + part["timeouts"]

    def _senders_by_owner(self, senders: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        return self.pool.by_owner(senders, lambda sender: sender[0])

    def open_loop(
        self, senders: list[tuple[int, int]], rate: float, duration: float, **churn: Any
    ) -> tuple[int, int]:
        """Run an open-loop step; returns its send window in ns."""
        groups = self._senders_by_owner(senders)
        payloads: list[tuple[str, dict[str, Any]] | None] = [
            (
                "open_loop",
                {
                    "senders": group,
                    "rate": rate * len(group) / len(senders),
                    "duration": duration,
                    **churn,
                },
            )
            if group
            else None
            for group in groups
        ]
        start = time.perf_counter_ns()
        self.pool.call(payloads, timeout=duration + 120)
        return start, time.perf_counter_ns()

    def closed_loop(
        self, senders: list[tuple[int, int]], count: int, gap: float
    ) -> tuple[int, int]:
        groups = self._senders_by_owner(senders)
        payloads: list[tuple[str, dict[str, Any]] | None] = [
            ("closed_loop", {"senders": group, "count": count, "gap": gap, "ack_timeout": 30.0})
            if group
            else None
            for group in groups
        ]
        start = time.perf_counter_ns()
        self.pool.call(payloads, timeout=count * (gap + 31) + 60)
        return start, time.perf_counter_ns()

    def summary(
        self,
        rooms: set[int],
        window: tuple[int, int],
        recipients: int,
        kinds: tuple[str, ...] = ("badge", "room", "echo", "ack"),
    ) -> dict[str, Any]:
        sends = sends_in(self.sent, rooms, window)
        out: dict[str, Any] = {"sent": len(sends), "expected_badges": len(sends) * recipients}
        for kind in kinds:
            out[kind] = summarize(latencies(self.samples, kind, rooms=rooms, window=window))
        out["push"] = summarize(push_latencies(self.stack.pushed(), sends))
        return out

    def cpu_snapshot(self) -> cpu.CpuSnapshot:
        return cpu.snapshot(self.stack.cpu_seconds(), [proc.pid for proc in self.pool.procs])

    # --- phases -------------------------------------------------------------------------

    def run_compare(self, messages: int, gap: float) -> dict[str, Any]:
        plan, out = self.plan, {}
        per_room = max(1, messages // plan.compare_rooms)
        for kind, path, label in (
            ("c", "/ws/chat/", "product"),
            ("b", "/ws/baseline/", "baseline"),
        ):
            names = [
                f"{kind}{k}-{j}"
                for k in range(plan.compare_rooms)
                for j in range(plan.compare_members)
            ]
            join = {f"{kind}{k}-0": f"{kind}-{k}" for k in range(plan.compare_rooms)}
            self.connect(names, path, join)
            senders = [
                (self.uid(f"{kind}{k}-0"), self.room(f"{kind}-{k}"))
                for k in range(plan.compare_rooms)
            ]
            window = self.closed_loop(senders, per_room, gap)
            time.sleep(1.0 if kind == "c" else 0.2)  # the product's pushes finish after the ack
            self.collect()
            rooms = {room for _, room in senders}
            out[label] = self.summary(rooms, window, plan.compare_members - 1)
        return out

    def settle(self) -> None:
        """Wait until the server has worked off what earlier phases queued.

        A Channels server handles the ORM work of every consumer in one thread, first come
        first served, so the ack of one fresh message comes back only once the backlog is gone.
        """
        senders, _ = self.load_senders()
        if senders:
            self.closed_loop(senders[:1], 1, gap=0.5)
            self.collect()

    def await_badges(
        self, rooms: set[int], window: tuple[int, int], recipients: int, quiet: float = 10.0
    ) -> None:
        """Collect until every badge of the window's messages arrived, or none came for
        `quiet` s (what is still missing then is lost). With sends saved concurrently the
        settling ack no longer proves the receivers' backlog is gone."""
        expected = len(sends_in(self.sent, rooms, window)) * recipients
        seen, last_change = -1, time.monotonic()
        while time.monotonic() - last_change < quiet:
            self.collect()
            got = len(latencies(self.samples, "badge", rooms=rooms, window=window))
            if got >= expected:
                return
            if got != seen:
                seen, last_change = got, time.monotonic()
            time.sleep(0.5)

    def load_senders(self) -> tuple[list[tuple[int, int]], set[int]]:
        count = self.plan.clients // self.plan.room_size
        senders = [
            (self.uid(f"u{k * self.plan.room_size + 1}"), self.room(f"load-{k}"))
            for k in range(count)
        ]
        return senders, {room for _, room in senders}

    def run_load(
        self, rates: list[float], duration: float, drain: float, stop_when_bent: bool
    ) -> list[dict[str, Any]]:
        senders, rooms = self.load_senders()
        steps = []
        for rate in rates:
            self.settle()
            before = self.stack.command_stats()
            cpu_before = self.cpu_snapshot()
            window = self.open_loop(senders, rate, duration)
            time.sleep(drain)
            self.settle()  # an overloaded step's late badges still count, with their latency
            self.await_badges(rooms, window, self.plan.room_size - 1)
            cpu_after = self.cpu_snapshot()
            after = self.stack.command_stats()
            step = self.summary(rooms, window, self.plan.room_size - 1)
            seconds = (window[1] - window[0]) / 1e9
            step.update(
                rate=rate, seconds=seconds, achieved=step["sent"] / seconds, window=list(window)
            )
            step["badge_frames_per_s"] = step["badge"]["n"] / seconds
            # Counting late badges over the send window flatters an overloaded step: this
            # divides by the time until the last badge arrived instead.
            arrivals = [
                arrived
                for kind, room, sent_ns, arrived in self.samples
                if kind == "badge" and room in rooms and window[0] <= sent_ns < window[1]
            ]
            step["delivered_per_s"] = (
                len(arrivals) / ((max(arrivals) - window[0]) / 1e9) if arrivals else 0.0
            )
            step["lost"] = max(0, step["expected_badges"] - step["badge"]["n"])
            step["cpu"] = cpu.usage(
                cpu_before, cpu_after, messages=step["sent"], badge_frames=step["badge"]["n"]
            )
            step["redis_calls_per_message"] = {
                name: (calls - before.get(name, 0)) / max(1, step["sent"])
                for name, calls in after.items()
                if calls - before.get(name, 0) > 0
            }
            step["bent"] = bool(
                step["badge"]["p99"] > P99_LIMIT_MS
                or step["badge"]["n"] < 0.95 * step["expected_badges"]
                or step["achieved"] < 0.9 * rate
            )
            steps.append(step)
            print(
                f"  {rate:>6.0f} msg/s: achieved {step['achieved']:.0f}, badge p50 "
                f"{step['badge']['p50']:.1f} p99 {step['badge']['p99']:.1f} ms, "
                f"{step['badge']['n']}/{step['expected_badges']} badges "
                f"({step['delivered_per_s']:.0f}/s delivered)\n           "
                f"{cpu.describe(step['cpu'])}",
                flush=True,
            )
            if step["bent"] and stop_when_bent and rate >= 200:  # 200: the goal's rate
                break
        return steps

    def _spy(
        self, name: str, seconds: float, idle: bool = True
    ) -> "tuple[subprocess.Popen[bytes], Path] | None":
        """Start py-spy on daphne for `seconds` (raw stacks, every thread; idle ones only if
        `idle`, else the samples show where CPU went)."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists() or self.stack.daphne is None:
            return None
        output = self.results_dir / name
        command = [py_spy, "record", "--pid", str(self.stack.daphne.pid), "--rate", "250"]
        command += ["--duration", str(max(1, int(seconds))), "--format", "raw", "--nonblocking"]
        command += ["--threads", "--output", str(output)] + (["--idle"] if idle else ["--gil"])
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), output

    def _spy_done(self, spy: "tuple[subprocess.Popen[bytes], Path] | None") -> str | None:
        if spy is None:
            return None
        process, output = spy
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            err = b"py-spy did not finish"
        return str(output) if output.exists() else (err.decode()[-500:] or "no output")

    def run_profile(self, rate: float, duration: float) -> str | None:
        """py-spy samples daphne during one more step at `rate`; returns the stacks' path."""
        senders, _ = self.load_senders()
        self.settle()
        spy = self._spy("pyspy-daphne.txt", duration)
        self.open_loop(senders, rate, duration)
        self.collect()
        return self._spy_done(spy)

    def run_soak(
        self,
        rate: float,
        seconds: float,
        warmup: float,
        churn_every: float = 2.0,
        churn_count: int = 2,
    ) -> tuple[int, int]:
        senders, _ = self.load_senders()
        self.settle()
        self.open_loop(senders, rate, warmup)
        window = self.open_loop(
            senders, rate, seconds, churn_every=churn_every, churn_count=churn_count
        )
        time.sleep(1.0)
        self.collect()
        return window

    def run_fanout(
        self, messages: int, profile: bool, idle: bool = True
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The last member's badge per room size; py-spy during the largest room if asked."""
        needed = max(self.plan.fanout, default=0)
        extra = [f"u{i}" for i in range(self.plan.clients + 1, needed + 1)]
        if extra:
            self.connect(extra, "/ws/chat/")
        results = []
        spy = None
        for size in self.plan.fanout:
            self.settle()
            room_id = self.room(f"fan-{size}")
            gap = max(0.5, size / 1000)
            if profile and size == needed:
                spy = self._spy("pyspy-fanout.txt", messages * (gap + 0.3), idle=idle)
            cpu_before = self.cpu_snapshot()
            window = self.closed_loop([(self.uid("u1"), room_id)], messages, gap=gap)
            time.sleep(0.5)
            cpu_after = self.cpu_snapshot()
            self.collect()
            last: dict[int, int] = {}
            per_member = []
            received: dict[int, int] = {}
            for kind, room, sent_ns, arrived_ns in self.samples:
                if kind == "badge" and room == room_id and window[0] <= sent_ns < window[1]:
                    last[sent_ns] = max(last.get(sent_ns, 0), arrived_ns)
                    received[sent_ns] = received.get(sent_ns, 0) + 1
                    per_member.append((arrived_ns - sent_ns) / 1e6)
            lasts = [(arrived - sent) / 1e6 for sent, arrived in last.items()]
            sent = len(sends_in(self.sent, {room_id}, window))
            row: dict[str, Any] = {
                "size": size,
                "messages": sent,
                "complete": sum(1 for n in received.values() if n >= size - 1),
                "lost": max(0, sent * (size - 1) - len(per_member)),
                "last_member": summarize(lasts),
                "member": summarize(per_member),
                "cpu": cpu.usage(
                    cpu_before, cpu_after, messages=sent, badge_frames=len(per_member)
                ),
            }
            results.append(row)
            print(
                f"  room of {size}: last member badged after "
                f"{row['last_member']['p50']:.1f} ms (median), p99 "
                f"{row['last_member']['p99']:.1f} ms, {row['lost']} badges lost"
                f"\n           {cpu.describe(row['cpu'])}",
                flush=True,
            )
        return results, self._spy_done(spy)
