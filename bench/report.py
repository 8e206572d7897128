"""The report: bench/results/REPORT.md, results.json and PNG plots."""

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.clients import Sample  # noqa: E402
from bench.stats import latencies  # noqa: E402


def ms(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


# --- py-spy ------------------------------------------------------------------------------


_IDLE = ("_worker (concurrent/futures/thread.py:81)", "EpollSelector.select (selectors.py")
_PLUMBING = (
    "channels/routing.py",
    "channels/middleware.py",
    "channels/auth.py",
    "channels/sessions.py",
    "channels/security",
    "chat/middleware.py",
    "channels/utils.py",
    "AsyncConsumer.__call__",
    "as_asgi",
    "threading.py",
    "concurrent/futures",
    "asgiref/sync.py",
    "<frozen runpy>",
    "daphne/cli.py",
    "daphne/server.py",
    "daphne/__main__.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "twisted/internet/asyncioreactor.py",
    "channels/db.py",
)


def pyspy_threads(path: Path, limit: int = 8) -> list[dict[str, Any]]:
    """Per thread: how busy it was, and the functions it was busy in (% of its wall time).

    Reads py-spy's raw (collapsed) stacks recorded with --threads --idle; a thread is idle
    when it waits for work (an executor's queue, an event loop's epoll).
    """
    totals: Counter[str] = Counter()
    busy: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = {}
    leaves: dict[str, Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1].rstrip("0123456789_-")
        totals[thread] += count
        if any(frame.startswith(_IDLE) for frame in frames):
            continue
        busy[thread] += count
        seen = {frame.rsplit(":", 1)[0] for frame in frames[1:]}
        leaves.setdefault(thread, Counter())[frames[-1].rsplit(":", 1)[0] + ")"] += count
        counter = inclusive.setdefault(thread, Counter())
        for frame in seen:
            if not any(part in frame for part in _PLUMBING):
                counter[frame] += count
    out = []
    for thread, total in totals.most_common():
        top = inclusive.get(thread, Counter()).most_common(limit)
        out.append(
            {
                "thread": thread,
                "busy": 100 * busy[thread] / total,
                "top": [(frame + ")", 100 * n / total) for frame, n in top],
                "self": [
                    (frame, 100 * n / total)
                    for frame, n in leaves.get(thread, Counter()).most_common(5)
                ],
            }
        )
    return out


def pyspy_self_time(path: Path, limit: int = 25) -> list[tuple[str, float]]:
    """Where the process's CPU went, over all threads: self time per function, % of busy."""
    leaves: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if any(frame.startswith(_IDLE) for frame in frames):
            continue
        leaves[frames[-1].rsplit(":", 1)[0] + ")"] += int(count_text)
    total = sum(leaves.values()) or 1
    return [(frame, 100 * n / total) for frame, n in leaves.most_common(limit)]


# --- plots -------------------------------------------------------------------------------


def plot_distribution(out: Path, samples: list[Sample], data: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    curves: list[tuple[str, Any, tuple[int, int] | None]] = [
        ("baseline (sequential)", data["compare_rooms"]["baseline"], None)
    ]
    curves.append(("product, one message at a time", data["compare_rooms"]["product"], None))
    for step in data["load"]:
        curves.append(
            (f"product at {step['rate']:.0f} msg/s", data["load_rooms"], tuple(step["window"]))
        )
    for label, rooms, window in curves:
        values = sorted(latencies(samples, "badge", rooms=set(rooms), window=window))
        if values:
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.plot(values, ys, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("badge latency: send → total-unread-count-updated (ms, log)")
    ax.set_ylabel("fraction of badges")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency_distribution.png", dpi=120)
    plt.close(fig)


def plot_load(out: Path, steps: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    rates = [step["achieved"] for step in steps]
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"), ("max", "x:")):
        ax.plot(rates, [step["badge"][key] for step in steps], style, label=f"badge {key}")
    ax.plot(rates, [step["echo"]["p99"] for step in steps], "d--", label="echo p99")
    ax.axhline(50, color="red", alpha=0.5, label="50 ms")
    ax.set_yscale("log")
    ax.set_xlabel("messages/s sent (achieved)")
    ax.set_ylabel("latency (ms, log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency_vs_load.png", dpi=120)
    plt.close(fig)


def plot_fanout(out: Path, fanout: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = [row["size"] for row in fanout]
    ax.plot(
        sizes, [row["last_member"]["p50"] for row in fanout], "o-", label="last member (median)"
    )
    ax.plot(sizes, [row["last_member"]["max"] for row in fanout], "x:", label="last member (max)")
    ax.plot(sizes, [row["member"]["p50"] for row in fanout], "s--", label="any member p50")
    ax.axhline(50, color="red", alpha=0.5, label="50 ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("room members")
    ax.set_ylabel("ms after the send (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fanout.png", dpi=120)
    plt.close(fig)


def plot_rss(out: Path, rss: list[tuple[int, dict[str, int]]], soak: tuple[int, int]) -> None:
    if not rss:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    t0 = rss[0][0]
    for name in ("daphne", "worker"):
        points = [((t - t0) / 1e9, v[name] / 2**20) for t, v in rss if name in v]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=f"{name} RSS")
    ax.axvspan((soak[0] - t0) / 1e9, (soak[1] - t0) / 1e9, alpha=0.15, label="soak")
    ax.set_xlabel("seconds since the server started")
    ax.set_ylabel("MiB")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "rss.png", dpi=120)
    plt.close(fig)


# --- Markdown ----------------------------------------------------------------------------


def _lat_row(name: str, summary: dict[str, Any]) -> str:
    return (
        f"| {name} | {summary['n']} | "
        + " | ".join(ms(summary[k]) for k in ("p50", "p95", "p99", "max"))
        + " |"
    )


def markdown(data: dict[str, Any]) -> str:
    compare, steps, fanout, soak = data["compare"], data["load"], data["fanout"], data["soak"]
    product, baseline = compare["product"], compare["baseline"]
    lines = [
        "# Benchmark: event-driven badges against the sequential design",
        "",
        f"Measured {data['when']} on {data['machine']}; database **{data['database']}**, "
        f"Redis {data['redis']}, push delay {data['push_delay']} s, {data['clients']} load clients "
        f"in rooms of {data['room_size']}.",
        "",
        f"Command: `{data['command']}` (wall time {data['wall_seconds']:.0f} s).",
        "",
        "Latency runs from the moment the sender's frame leaves the client to the moment each "
        "recipient's frame arrives, all over loopback WebSockets between separate processes.",
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]
    for goal, measured, met in data["goals"]:
        lines.append(
            f"| {goal} | {measured} | {'yes' if met else 'no' if met is not None else 'n/a'} |"
        )
    ratio = (
        baseline["badge"]["p50"] / product["badge"]["p50"] if product["badge"]["p50"] else math.nan
    )
    lines += [
        "",
        "## Product against the sequential baseline",
        "",
        f"{data['compare_rooms_count']} rooms of {data['compare_members']} members (one sender "
        f"viewing, {data['compare_members'] - 1} recipients), one message at a time per room; "
        f"{product['sent']} product and {baseline['sent']} baseline messages. Latencies in ms.",
        "",
        "| frame | product p50 | p95 | p99 | max | baseline p50 | p95 | p99 | max | ratio (p50) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("badge (total-unread-count-updated)", "badge", "badge"),
        ("room update (chat-room-updated)", "room", "room"),
        ("message echo (chat-message)", "echo", "echo"),
        ("sender's ack (message-sent)", "ack", "ack"),
        ("whole message (push done / baseline ack)", "push", "ack"),
    ]
    for name, p_key, b_key in rows:
        p, b = product[p_key], baseline[b_key]
        r = b["p50"] / p["p50"] if p["p50"] else math.nan
        lines.append(
            f"| {name} | "
            + " | ".join(ms(p[k]) for k in ("p50", "p95", "p99", "max"))
            + " | "
            + " | ".join(ms(b[k]) for k in ("p50", "p95", "p99", "max"))
            + f" | {r:.0f}× |"
        )
    lines += [
        "",
        f"Badge p50 ratio baseline/product: **{ratio:.0f}×**.",
        "",
        "## Latency against load",
        "",
        f"Open-loop sends spread over {len(data['load_rooms'])} rooms, {data['duration']} s per "
        "step; each message badges the room's other members. The climb stops at the first step "
        f"whose badge p99 passes {data['p99_limit']} ms, loses badges, or cannot be sent on time.",
        "",
        "| target msg/s | achieved | badges/s | badges got/expected | badge p50 | p95 | p99 | max "
        "| room p99 | echo p50 | echo p99 | push done p50 | daphne CPU ms/msg | ms/badge "
        "| load gen. cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        b, cpu = step["badge"], step["cpu"]
        lines.append(
            f"| {step['rate']:.0f} | {step['achieved']:.0f} | {step['badge_frames_per_s']:.0f} | "
            f"{b['n']}/{step['expected_badges']} | {ms(b['p50'])} | {ms(b['p95'])} | "
            f"{ms(b['p99'])} | {ms(b['max'])} | {ms(step['room']['p99'])} | "
            f"{ms(step['echo']['p50'])} | {ms(step['echo']['p99'])} | {ms(step['push']['p50'])} | "
            f"{cpu['daphne_ms_per_message']:.2f} | {cpu['daphne_ms_per_badge']:.3f} "
            f"| {cpu['load_cores']:.2f} |"
        )
    sustained = data["sustained"]
    lines += [
        "",
        f"Sustained before badge p99 passes {data['p99_limit']} ms: "
        + (
            f"**{sustained['achieved']:.0f} messages/s, "
            f"{sustained['badge_frames_per_s']:.0f} badge frames/s**."
            if sustained
            else "**no step stayed under the limit**."
        ),
        "",
        "## Fan-out",
        "",
        "One message at a time into a room whose members are all connected and not viewing it.",
        "",
        "| members | messages | all badged | last member median (ms) | last member max "
        "| any member p50 | p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in fanout:
        lines.append(
            f"| {row['size']} | {row['messages']} | {row['complete']} "
            f"| {ms(row['last_member']['p50'])} | {ms(row['last_member']['max'])} "
            f"| {ms(row['member']['p50'])} | {ms(row['member']['p99'])} |"
        )
    lines += [
        "",
        "## Memory",
        "",
        f"Soak: {soak['seconds']:.0f} s at {soak['rate']:.0f} messages/s with connection churn "
        f"(2 reconnects per client process every 2 s); badge p50 {ms(soak['badge']['p50'])} ms, "
        f"p99 {ms(soak['badge']['p99'])} ms over {soak['badge']['n']} badges. RSS is the median "
        "of the first and of the last 5 s of the soak.",
        "",
        "| process | start | end | growth |",
        "|---|---|---|---|",
    ]
    for name, (start, end) in soak["rss"].items():
        lines.append(
            f"| {name} | {mib(start)} | {mib(end)} | {100 * (end - start) / start:+.1f} % |"
        )
    lines += ["", "## Hot path", ""] + data["hotpath_lines"]
    lines += [
        "",
        "## Plots",
        "",
        "![badge latency distribution](latency_distribution.png)",
        "![latency against load](latency_vs_load.png)",
        "![fan-out](fanout.png)",
        "![server RSS](rss.png)",
        "",
    ]
    if data["errors"]:
        lines += ["## Errors seen by clients", "", f"{data['error_count']} in all; first ones:", ""]
        lines += [f"- `{error}`" for error in data["errors"][:10]]
    return "\n".join(lines) + "\n"


def write(out: Path, data: dict[str, Any], samples: list[Sample]) -> Path:
    plot_distribution(out, samples, data)
    plot_load(out, data["load"])
    plot_fanout(out, data["fanout"])
    plot_rss(out, data["rss_series"], tuple(data["soak"]["window"]))
    report = out / "REPORT.md"
    report.write_text(markdown(data))
    (out / "results.json").write_text(
        json.dumps({k: v for k, v in data.items() if k != "rss_series"}, indent=1, default=str)
    )
    return report
