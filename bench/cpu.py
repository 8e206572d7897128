"""CPU time per phase, from each process's own counters: comparable across machines.

Latency depends on the machine and on what else runs on it; CPU seconds spent per message and
per badge frame do much less. A snapshot holds the CPU time so far of every server process
(daphne processes, the push worker, Redis) and of the load generator (client processes and
this coordinator); the difference of two snapshots, divided by the messages sent and the badge
frames the clients received in between, is what the report shows.
"""

import os
import time
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass
class CpuSnapshot:
    wall: float
    seconds: dict[str, float]


def process_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def snapshot(servers: dict[str, float], client_pids: list[int]) -> CpuSnapshot:
    seconds = dict(servers)
    seconds["clients"] = sum(process_seconds(pid) for pid in client_pids)
    seconds["coordinator"] = process_seconds(os.getpid())
    return CpuSnapshot(time.monotonic(), seconds)


def usage(
    before: CpuSnapshot, after: CpuSnapshot, *, messages: int, badge_frames: int
) -> dict[str, Any]:
    """CPU seconds per process over the interval, and the per-message and per-frame costs."""
    wall = max(1e-9, after.wall - before.wall)
    spent = {
        name: after.seconds[name] - before.seconds.get(name, 0.0)
        for name in after.seconds
        if name in before.seconds
    }
    daphne = sum(v for k, v in spent.items() if k.startswith("daphne"))
    load = spent.get("clients", 0.0) + spent.get("coordinator", 0.0)
    server = daphne + spent.get("worker", 0.0) + spent.get("redis", 0.0)
    return {
        "wall": wall,
        "seconds": spent,
        "daphne_seconds": daphne,
        "daphne_ms_per_message": 1000 * daphne / messages if messages else float("nan"),
        "daphne_ms_per_badge": 1000 * daphne / badge_frames if badge_frames else float("nan"),
        # Everything on the server side: daphne, the worker and Redis.
        "server_ms_per_message": 1000 * server / messages if messages else float("nan"),
        # Cores busy on average, out of os.cpu_count().
        "daphne_cores": daphne / wall,
        "load_cores": load / wall,
        "cpus": os.cpu_count() or 1,
    }


def describe(cpu: dict[str, Any]) -> str:
    """One line for the console and the report."""
    return (
        f"daphne {cpu['daphne_ms_per_message']:.2f} ms CPU/message, "
        f"{cpu['daphne_ms_per_badge']:.3f} ms/badge frame ({cpu['daphne_cores']:.2f} cores); "
        f"server incl. worker+Redis {cpu['server_ms_per_message']:.2f} ms/message; "
        f"load generator {cpu['load_cores']:.2f} of {cpu['cpus']} cores"
    )
