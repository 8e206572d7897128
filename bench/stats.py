"""Latency summaries: nearest-rank percentiles over nanosecond samples, shown in ms."""

import math
from typing import Any

from bench.clients import Sample


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(latencies_ms: list[float]) -> dict[str, Any]:
    values = sorted(latencies_ms)
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": values[-1] if values else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
    }


def latencies(
    samples: list[Sample],
    kind: str,
    *,
    rooms: set[int] | None = None,
    window: tuple[int, int] | None = None,
) -> list[float]:
    """Latencies in ms of one kind of frame, for messages of these rooms sent in the window."""
    out = []
    for sample_kind, room_id, sent_ns, arrived_ns in samples:
        if sample_kind != kind or (rooms is not None and room_id not in rooms):
            continue
        if window is not None and not window[0] <= sent_ns < window[1]:
            continue
        out.append((arrived_ns - sent_ns) / 1e6)
    return out


def sends_in(sent: list[tuple[int, int]], rooms: set[int], window: tuple[int, int]) -> set[int]:
    return {ns for room_id, ns in sent if room_id in rooms and window[0] <= ns < window[1]}


def push_latencies(pushed: list[tuple[int, int]], sends: set[int]) -> list[float]:
    return [(done - sent) / 1e6 for sent, done in pushed if sent in sends]
