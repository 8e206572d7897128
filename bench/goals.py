"""The issue's benchmark goals, one command each: `make bench BENCH_ARGS='--goal NAME'`.

Each goal starts the stack (with `--procs N` daphne processes, on PostgreSQL when DATABASE_URL
is set), connects only the clients it needs, runs its one phase, prints its verdict and writes
`results/goal-NAME.md` and `.json`. Every result carries the server's CPU time per message and
per badge frame and the load generator's CPU share, so a miss can say what limits it.

rate200     badge p99 ≤ 15 ms at 200 msg/s, 500 clients in rooms of 5 (10 s after a warm-up)
fanout1000  one room of 1,000 connected members: last member's badge ≤ 50 ms (p50/p99, 20 msgs)
fanout10000 one room of 10,000 connected members, 2 processes unless --procs: last member's
            badge p50 ≤ 250 ms (5 msgs)
frames      ≥ 3,000 badge frames/s (rooms of 20, rate climbs until p99 passes 50 ms or loses)
soak        server RSS growth < 5 % over `--soak-seconds` after a 60 s warm-up, with churn
"""

import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench import cpu, memwatch, report
from bench.phases import P99_LIMIT_MS, Bench
from bench.stack import RssSampler
from bench.stats import latencies, sends_in, summarize

LATE_WINDOW_S = 1200  # the soak's growth is also judged over its last 20 minutes
FIGURES = Path(__file__).resolve().parent / "figures"
NAMES = ("rate200", "fanout1000", "fanout10000", "frames", "soak")


def shape(name: str, args: Any) -> None:
    """The plan (clients, room size, fan-out rooms) each goal needs, before seeding."""
    args.compare_rooms = 1
    if name == "rate200":
        args.room_size = 5
    elif name == "fanout1000":
        args.clients, args.fanout = 0, [1000]
    elif name == "fanout10000":
        args.clients, args.fanout = 0, [10_000]
        if not args.procs_given:
            args.procs = 2
    elif name == "frames":
        args.clients, args.room_size = max(args.clients, 1000), 20
    if not name.startswith("fanout"):
        args.fanout = []


def run(name: str, args: Any, bench: Bench, sampler: RssSampler) -> dict[str, Any]:
    senders, rooms = bench.load_senders()
    if senders:
        names = [f"u{i}" for i in range(1, args.clients + 1)]
        join = {f"u{k * args.room_size + 1}": f"load-{k}" for k in range(len(senders))}
        opened = bench.connect(names, "/ws/chat/", join)
        print(f"{opened} load clients connected over {len(bench.stack.ports)} processes")
    result: dict[str, Any] = {"goal": name, "procs": len(bench.stack.ports)}
    if senders:
        result["connected"] = f"{opened} of {args.clients}"
    if name == "rate200":
        bench.run_load([50], 3.0, 1.0, False)  # warm-up: connections, caches, JIT-free paths
        seconds = max(args.duration, 10.0)
        spy = bench._spy("pyspy-goal-rate200.txt", seconds + 1, idle=False) if args.spy else None
        step = bench.run_load([200.0], seconds, 2.0, False)[0]
        result["pyspy"] = bench._spy_done(spy)
        b = step["badge"]
        result.update(step=_plain(step))
        result["measured"] = (
            f"badge p50 {b['p50']:.1f} ms, p99 {b['p99']:.1f} ms at {step['achieved']:.0f} msg/s "
            f"with {args.clients} clients; {step['lost']} badges lost"
        )
        result["met"] = b["p99"] <= 15 and step["lost"] == 0 and step["achieved"] >= 190
        result["cpu"] = step["cpu"]
    elif name in ("fanout1000", "fanout10000"):
        if not args.fanout_messages_given:
            args.fanout_messages = 20 if name == "fanout1000" else 5
        rows, result["pyspy"] = bench.run_fanout(args.fanout_messages, args.spy, idle=False)
        row = rows[0]
        last = row["last_member"]
        result.update(row=row, cpu=row["cpu"])
        result["measured"] = (
            f"{row['size']} members, {row['messages']} messages: last member badged p50 "
            f"{last['p50']:.1f} ms, p99 {last['p99']:.1f} ms (max {last['max']:.1f}); "
            f"{row['lost']} badges lost"
        )
        if name == "fanout1000":
            result["met"] = last["p99"] <= 50 and row["lost"] == 0
        else:
            result["met"] = last["p50"] <= 250 and row["lost"] == 0
    elif name == "frames":
        rates = [r for r in args.rates if r >= 50] if args.rates_given else [50, 100, 150, 200, 250]
        steps = bench.run_load(rates, args.duration, 2.0, False)
        ok = [s for s in steps if s["badge"]["p99"] <= P99_LIMIT_MS and s["lost"] == 0]
        best = max(ok, key=lambda s: s["delivered_per_s"]) if ok else steps[-1]
        if args.spy:
            spy = bench._spy("pyspy-goal-frames.txt", args.duration + 1, idle=False)
            bench.run_load([best["rate"]], args.duration, 2.0, False)
            result["pyspy"] = bench._spy_done(spy)
        result.update(steps=[_plain(s) for s in steps], cpu=best["cpu"])
        result["measured"] = (
            f"{best['delivered_per_s']:.0f} badge frames/s delivered at {best['achieved']:.0f} "
            f"msg/s (rooms of {args.room_size}, badge p99 {best['badge']['p99']:.1f} ms, "
            f"{best['lost']} lost); most delivered in any step "
            f"{max(s['delivered_per_s'] for s in steps):.0f}/s; daphne "
            f"{best['cpu']['daphne_ms_per_badge']:.3f} ms CPU per badge frame"
        )
        result["met"] = bool(ok) and best["delivered_per_s"] >= 3000
    elif name == "soak":
        result.update(_soak(args, bench, sampler))
    result["client_errors"] = {"count": bench.error_count, "first": bench.errors[:10]}
    return result


def _soak(args: Any, bench: Bench, sampler: RssSampler) -> dict[str, Any]:
    senders, rooms = bench.load_senders()
    print(f"soak: 60 s warm-up, then {args.soak_seconds:.0f} s at {args.soak_rate:.0f} msg/s")
    bench.settle()
    churn = {"churn_every": args.soak_churn_every, "churn_count": args.soak_churn_count}
    bench.open_loop(senders, args.soak_rate, 60.0, **churn)
    tracing = bool(os.environ.get("BENCH_TRACEMALLOC"))
    if tracing:
        _trace_mark(bench, "start")
    before = bench.cpu_snapshot()
    window = bench.run_soak(args.soak_rate, args.soak_seconds, warmup=0.0, **churn)
    time.sleep(2.0)
    bench.settle()
    if tracing:
        # After the settle: the end snapshot sees what stays, not what is still in flight.
        _trace_mark(bench, "end")
    after = bench.cpu_snapshot()
    sent = len(sends_in(bench.sent, rooms, window))
    badges = latencies(bench.samples, "badge", rooms=rooms, window=window)
    lost = max(0, sent * (args.room_size - 1) - len(badges))
    five = 5 * 10**9
    rss: dict[str, tuple[float, float]] = {}
    names = sorted({k for _, v in sampler.samples for k in v})
    for proc in names:
        first = [v[proc] for t, v in sampler.samples if window[0] <= t < window[0] + five]
        last = [v[proc] for t, v in sampler.samples if window[1] - five <= t < window[1]]
        if first and last:
            rss[proc] = (statistics.median(first), statistics.median(last))
    start, end = rss.get("daphne", (float("nan"), float("nan")))
    growth = 100 * (end - start) / start
    # Issue 14: the growth over the soak's last 20 minutes (when it lasts longer), per process:
    # the median of the 5 s from 20 minutes before its end against the last 5 s.
    late = max(window[0], window[1] - LATE_WINDOW_S * 10**9)
    rss_late: dict[str, tuple[float, float]] = {}
    for proc in names:
        first = [v[proc] for t, v in sampler.samples if late <= t < late + five]
        last = [v[proc] for t, v in sampler.samples if window[1] - five <= t < window[1]]
        if first and last:
            rss_late[proc] = (statistics.median(first), statistics.median(last))
    late_start, late_end = rss_late.get("daphne", (float("nan"), float("nan")))
    late_growth = 100 * (late_end - late_start) / late_start
    usage = cpu.usage(before, after, messages=sent, badge_frames=len(badges))
    t0 = sampler.samples[0][0] if sampler.samples else 0
    return {
        "memwatch": _memwatch(bench.results_dir, window, t0),
        "thread_changes": _changes(sampler.threads, t0, step=1),
        "rss_steps": _changes(sampler.samples, t0, step=2**20),
        "window": window,
        "rss": rss,
        "late_window": (late, window[1]),
        "rss_late": rss_late,
        "series": [(t, v) for t, v in sampler.samples],
        "badge": summarize(badges),
        "lost": lost,
        "cpu": usage,
        "measured": (
            f"daphne RSS {start / 2**20:.1f} → {end / 2**20:.1f} MiB ({growth:+.1f} %) over "
            f"{(window[1] - window[0]) / 1e9:.0f} s after a 60 s warm-up ({late_growth:+.1f} % "
            f"over the last {(window[1] - late) / 6e10:.0f} min); {lost} badges not "
            "received live (churned connections miss what is sent while they reconnect; their "
            "snapshot covers it)"
        ),
        "met": growth < 5 if args.soak_seconds >= 590 else None,
    }


def _trace_mark(bench: Bench, name: str) -> None:
    """BENCH_TRACEMALLOC=1: have every daphne's memwatch take its snapshot (bench/memwatch.py);
    wait until they all did (the end snapshot writes `tracemalloc-<pid>.txt`)."""
    memwatch.mark(bench.stack.logs, name)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if len(memwatch.marks_done(bench.stack.logs, name)) >= len(bench.stack.ports):
            return
        time.sleep(0.5)
    print(f"tracemalloc: not every daphne answered the {name!r} mark")


def _memwatch(directory: Path, window: tuple[int, int], t0: int) -> dict[str, Any]:
    """Per daphne process (bench/memwatch.py): its memory's parts at the soak's start and end,
    and when its thread count changed."""
    out: dict[str, Any] = {}
    five = 5 * 10**9
    for path in sorted(directory.glob("memwatch-*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        first = [r for r in rows if window[0] <= r["t"] < window[0] + five]
        last = [r for r in rows if window[1] - five <= r["t"] < window[1]]
        if not first or not last:
            continue
        keys = [k for k in first[0] if k != "t"]
        threads = []
        for before, after in zip(rows, rows[1:], strict=False):
            if after["threads"] != before["threads"]:
                threads.append(
                    (round((after["t"] - t0) / 1e9, 1), before["threads"], after["threads"])
                )
        out[path.stem] = {
            "start": {k: statistics.median(r[k] for r in first) for k in keys},
            "end": {k: statistics.median(r[k] for r in last) for k in keys},
            "thread_changes": threads[:50],
        }
    return out


def _changes(
    series: list[tuple[int, dict[str, int]]], t0: int, step: int
) -> list[tuple[float, str, int, int]]:
    """(seconds since start, process, before, after) where a value moved by ≥ `step` within
    5 s: thread counts, and RSS steps of a MiB or more."""
    out: list[tuple[float, str, int, int]] = []
    last: dict[str, tuple[int, int]] = {}
    for t, values in series:
        for name, value in values.items():
            if name == "daphne":
                continue
            at, seen = last.setdefault(name, (t, value))
            if abs(value - seen) >= step:
                out.append((round((t - t0) / 1e9, 1), name, seen, value))
                last[name] = (t, value)
            elif t - at > 5 * 10**9:
                last[name] = (t, value)
    return out[:200]


def _plain(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k not in ("redis_calls_per_message",)}


def write(out: Path, result: dict[str, Any], command: str) -> Path:
    verdict = {True: "MET", False: "MISSED", None: "n/a (too short)"}[result["met"]]
    lines = [
        f"# Goal {result['goal']}: {verdict}",
        "",
        f"Command: `{command}`; {result['procs']} daphne process(es), "
        f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        f"- measured: {result['measured']}",
        f"- CPU: {cpu.describe(result['cpu'])}",
        f"- client errors: {result['client_errors']['count']} "
        + "; ".join(f"`{e[:120]}`" for e in result["client_errors"]["first"][:3]),
        "- CPU seconds by process: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(result["cpu"]["seconds"].items())),
    ]
    spied = result.get("pyspy")
    if spied and Path(spied).exists():
        lines += [
            "",
            f"py-spy on daphne0 during the measured phase (`{Path(spied).name}`, on-CPU samples "
            "unless the phase samples idle threads too): self time by function over all "
            "threads, % of samples:",
            "",
        ]
        lines += [
            f"- {pct:.1f} % `{frame[:110]}`" for frame, pct in report.pyspy_self_time(Path(spied))
        ]
        lines += ["", "Per thread:", ""]
        for thread in report.pyspy_threads(Path(spied)):
            lines.append(f"- **{thread['thread']}** busy {thread['busy']:.0f} %")
    if result["goal"] == "soak":
        lines += ["", "| process | start | end | growth |", "|---|---|---|---|"]
        for proc, (start, end) in sorted(result["rss"].items()):
            lines.append(
                f"| {proc} | {start / 2**20:.1f} MiB | {end / 2**20:.1f} MiB | "
                f"{100 * (end - start) / start:+.1f} % |"
            )
        late = result["late_window"]
        lines += [
            "",
            f"Over the last {(late[1] - late[0]) / 1e9 / 60:.0f} minutes of the measured soak "
            "(median of 5 s at its start against the last 5 s):",
            "",
            "| process | start | end | growth |",
            "|---|---|---|---|",
        ]
        for proc, (start, end) in sorted(result["rss_late"].items()):
            lines.append(
                f"| {proc} | {start / 2**20:.1f} MiB | {end / 2**20:.1f} MiB | "
                f"{100 * (end - start) / start:+.1f} % |"
            )
        lines += ["", "Thread count changes (s since start, process, before → after): "]
        lines += [", ".join(f"{t} {n} {a}→{b}" for t, n, a, b in result["thread_changes"])]
        lines += ["", "RSS steps of ≥ 1 MiB within 5 s (s since start, process, MiB): "]
        lines += [
            ", ".join(
                f"{t} {n} {a / 2**20:.1f}→{b / 2**20:.1f}" for t, n, a, b in result["rss_steps"]
            )
        ]
        for name, mem in result["memwatch"].items():
            lines += ["", f"{name} (inside the process, start → end of the measured soak):", ""]
            lines += [
                ", ".join(
                    f"{k} {_human(k, mem['start'][k])} → {_human(k, mem['end'][k])}"
                    for k in mem["start"]
                ),
                "",
                "thread count changes (s since start, before → after): "
                + ", ".join(f"{t} {a}→{b}" for t, a, b in mem["thread_changes"]),
            ]
        series = result.pop("series")
        _plot_rss(out / "rss-soak.png", series, tuple(result["window"]), tuple(late))
        # A copy for the docs to cite: bench/figures/rss-soak-<seconds>s-<N>procs.png.
        seconds = (result["window"][1] - result["window"][0]) / 1e9
        figure = FIGURES / f"rss-soak-{seconds:.0f}s-{result['procs']}procs.png"
        shutil.copyfile(out / "rss-soak.png", figure)
        lines += ["", f"Plot copied to `bench/figures/{figure.name}`."]
        _plot_memwatch(out / "memwatch-soak.png", out, series[0][0] if series else 0)
        lines += ["", "![RSS](rss-soak.png)", "", "![inside daphne](memwatch-soak.png)"]
    path = out / f"goal-{result['goal']}.md"
    path.write_text("\n".join(lines) + "\n")
    (out / f"goal-{result['goal']}.json").write_text(json.dumps(result, indent=1, default=str))
    return path


def _plot_rss(
    path: Path,
    series: list[tuple[int, dict[str, int]]],
    window: tuple[int, int],
    late: tuple[int, int] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    t0 = series[0][0]
    names = sorted({k for _, v in series for k in v})
    for name in names:
        points = [((t - t0) / 1e9, v[name] / 2**20) for t, v in series if name in v]
        label = f"{name} RSS" if name != "daphne" or len(names) <= 3 else "daphne RSS (sum)"
        ax.plot([x for x, _ in points], [y for _, y in points], label=label)
    ax.axvspan((window[0] - t0) / 1e9, (window[1] - t0) / 1e9, alpha=0.15, label="measured")
    if late is not None and late[0] > window[0]:
        ax.axvspan(
            (late[0] - t0) / 1e9,
            (late[1] - t0) / 1e9,
            alpha=0.15,
            color="tab:green",
            label=f"last {(late[1] - late[0]) / 6e10:.0f} min",
        )
    ax.set_xlabel("seconds since the server started")
    ax.set_ylabel("MiB")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _human(key: str, value: float) -> str:
    return (
        f"{value / 2**20:.1f} MiB" if key == "rss" or key.startswith("malloc") else f"{value:.0f}"
    )


def _plot_memwatch(path: Path, directory: Path, t0: int) -> None:
    """What each daphne's memory is made of over the run (bench/memwatch.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted(directory.glob("memwatch-*.jsonl"))
    if not files:
        return
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for file in files:
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        xs = [(r["t"] - t0) / 1e9 for r in rows]
        for key in ("rss", "malloc_in_use", "malloc_free", "sqlite_memory"):
            if key in rows[0]:
                top.plot(xs, [r[key] / 2**20 for r in rows], label=f"{file.stem[9:]} {key}")
        bottom.plot(xs, [r["blocks"] / 1000 for r in rows], label=f"{file.stem[9:]} blocks")
    top.set_ylabel("MiB")
    top.legend(fontsize=7)
    top.grid(True, alpha=0.3)
    bottom.set_ylabel("Python blocks (thousands)")
    bottom.set_xlabel("seconds since the server started")
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
