"""`python -m bench.servers`: the ASGI servers side by side on the bench's goals (issue 14).

Each goal (`fanout1000` and `rate200` unless `--goals` says otherwise) runs under each server
(daphne, uvicorn, granian, started as bench/stack.py's SERVERS say), every pair in a stack of
its own (`python -m bench --goal G --server S`, the database and Redis of the environment as for
`make bench`). Rounds interleave the servers, so a change in what else runs on the machine
touches all of them alike. It prints, and writes to `results/servers/servers.md`, the server
processes' CPU per badge frame and per message and the badge latency, per server and round,
then the median over rounds with CPU per frame relative to daphne's.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python -m bench.servers --rounds 2
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.stack import RESULTS, ROOT, SERVERS

GOALS = ("fanout1000", "rate200")


def parse(argv: list[str]) -> argparse.Namespace:
    names = lambda text: [x for x in text.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__)
    p.add_argument("--servers", type=names, default=["daphne", "uvicorn", "granian"])
    p.add_argument("--goals", type=names, default=list(GOALS))
    p.add_argument("--procs", type=int, default=1, help="server processes per run")
    p.add_argument("--rounds", type=int, default=1, help="runs of every pair, interleaved")
    p.add_argument("--results", type=Path, default=RESULTS / "servers")
    args = p.parse_args(argv)
    unknown = [s for s in args.servers if s not in SERVERS] + [
        g for g in args.goals if g not in GOALS
    ]
    if unknown:
        p.error(f"unknown: {', '.join(unknown)} (servers {sorted(SERVERS)}, goals {GOALS})")
    return args


def run_one(goal: str, server: str, procs: int, out: Path) -> dict[str, Any]:
    """One goal under one server in a fresh stack: its figures, or why it failed."""
    command = [sys.executable, "-m", "bench", "--goal", goal, "--server", server]
    command += ["--procs", str(procs), "--results", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    (out / "bench.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "bench.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return {"goal": goal, "server": server, "error": (done.stdout + done.stderr)[-300:]}
    result = json.loads((out / f"goal-{goal}.json").read_text())
    latency = result["row"]["last_member"] if goal == "fanout1000" else result["step"]["badge"]
    lost = result["row"]["lost"] if goal == "fanout1000" else result["step"]["lost"]
    cpu = result["cpu"]
    return {
        "goal": goal,
        "server": server,
        "us_per_frame": 1000 * cpu["daphne_ms_per_badge"],
        "ms_per_message": cpu["daphne_ms_per_message"],
        "whole_ms_per_message": cpu["server_ms_per_message"],
        "p50": latency["p50"],
        "p99": latency["p99"],
        "lost": lost,
    }


def row(figures: dict[str, Any], baseline: float | None) -> str:
    if "error" in figures:
        return f"| {figures['server']} | failed: `{figures['error'].strip()[-120:]}` ||||||"
    ratio = f"{figures['us_per_frame'] / baseline:.2f}×" if baseline else "–"
    return (
        f"| {figures['server']} | {figures['us_per_frame']:.0f} µs | {ratio} | "
        f"{figures['ms_per_message']:.2f} ms | {figures['whole_ms_per_message']:.2f} ms | "
        f"{figures['p50']:.1f} / {figures['p99']:.1f} ms | {figures['lost']} |"
    )


HEADER = [
    "| server | CPU per badge frame | × daphne | CPU per message | whole server per message "
    "| badge p50 / p99 | lost |",
    "|---|---|---|---|---|---|---|",
]


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[-1]
    keys = ("us_per_frame", "ms_per_message", "whole_ms_per_message", "p50", "p99")
    out: dict[str, Any] = {k: statistics.median(r[k] for r in good) for k in keys}
    out.update(server=good[0]["server"], lost=max(r["lost"] for r in good))
    return out


def table(runs: list[dict[str, Any]], goal: str, servers: list[str]) -> list[str]:
    medians = {
        s: median_of([r for r in runs if r["goal"] == goal and r["server"] == s]) for s in servers
    }
    baseline = medians.get("daphne", {}).get("us_per_frame")
    return HEADER + [row(medians[s], baseline) for s in servers]


def main(argv: list[str]) -> int:
    args = parse(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for round_ in range(1, args.rounds + 1):
        for goal in args.goals:
            # Each round starts with another server, so none always runs first.
            shift = (round_ - 1) % len(args.servers)
            for server in args.servers[shift:] + args.servers[:shift]:
                print(f"round {round_}: {goal} under {server} …", flush=True)
                out = args.results / f"{goal}-{server}-{round_}"
                figures = run_one(goal, server, args.procs, out)
                figures["round"] = round_
                runs.append(figures)
                print("  " + row(figures, None), flush=True)
    lines = [
        "# The ASGI servers side by side",
        "",
        f"Command: `python -m bench.servers {shlex.join(argv)}`; {args.procs} server "
        f"process(es) per run; CPU is the server processes' own (user + system), per badge "
        "frame the clients received; *whole server* adds the push worker and Redis. Latency: "
        "the last member's badge (fanout1000) or every badge (rate200).",
    ]
    for goal in args.goals:
        lines += ["", f"## {goal}, median of {args.rounds} round(s)", ""]
        lines += table(runs, goal, args.servers)
    lines += ["", "## Every run", ""]
    lines += ["| round | goal | " + HEADER[0][2:], "|---|---|" + HEADER[1][1:]]
    for figures in runs:
        lines.append(f"| {figures['round']} | {figures['goal']} " + row(figures, None))
    report = args.results / "servers.md"
    report.write_text("\n".join(lines) + "\n")
    (args.results / "servers.json").write_text(json.dumps(runs, indent=1))
    print("\n".join(lines))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
