"""Prometheus metrics and the wrapper that makes every signal receiver observable.

Served as text by GET /metrics (chatproject.metrics_export): the figures of every process of
the host in multiprocess mode (PROMETHEUS_MULTIPROC_DIR), else of the process that answered.
Each gauge says how processes' values combine (`multiprocess_mode`); it is ignored otherwise.
"""

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from redis.exceptions import RedisError

logger = logging.getLogger("chatproject.events")

# Sub-millisecond buckets: the badge path is meant to take about a millisecond.
_FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

BADGE_LATENCY = Histogram(
    "badge_latency_seconds",
    "From a message's commit until its badge frames are published to the channel layer.",
    buckets=_FAST_BUCKETS,
)
HANDLER_DURATION = Histogram(
    "signal_handler_duration_seconds",
    "Time spent in each signal receiver.",
    ["handler"],
    buckets=_FAST_BUCKETS,
)
HANDLER_FAILURES = Counter(
    "signal_handler_failures_total", "Signal receivers that raised.", ["handler"]
)
COUNTERS_REBUILT = Counter(
    "badge_counters_rebuilt_total",
    "Users whose Redis unread counters were rebuilt from the database.",
    ["reason"],
)
COUNTERS_REPAIRED = Counter(
    "badge_counters_repaired_total", "Counters that reconcile found wrong and repaired."
)
FANOUT_FAILURES = Counter(
    "fanout_failures_total", "Batches of frames that could not be published to the channel layer."
)
HUB_DELIVERIES = Counter(
    "fanout_hub_deliveries_total",
    "Messages the fan-out hub handed to a connection: written to its socket at once (direct) "
    "or queued for its consumer (queued: behind, busy, or not a frame message).",
    ["path"],
)

# Back-pressure (README "Back-pressure"): connections that fall behind, and receiver lanes.
CONNECTION_QUEUE_DEPTH_MAX = Gauge(
    "connection_queue_depth_max",
    "Frames waiting in the fullest connection queue (of all processes).",
    multiprocess_mode="livemax",
)
CONNECTION_QUEUED_FRAMES = Gauge(
    "connection_queued_frames",
    "Frames waiting in all connection queues (of all processes).",
    multiprocess_mode="livesum",
)
CONNECTION_FRAMES_COALESCED = Counter(
    "connection_frames_coalesced_total",
    "Badge frames a connection never sent because a newer one replaced them in its queue.",
)
CONNECTION_FRAMES_DROPPED = Counter(
    "connection_frames_dropped_total",
    "Frames dropped for connections closed as slow (queued, or arriving until they are gone).",
)
CONNECTION_QUEUES_ABANDONED = Counter(
    "connection_queues_abandoned_total",
    "Channels dropped because no consumer read them any more (their consumer was gone).",
)
CONNECTIONS_BEHIND = Gauge(
    "connections_behind",
    "Connections whose client is not reading fast enough right now.",
    multiprocess_mode="livesum",
)
SLOW_CONSUMER_DISCONNECTS = Counter(
    "slow_consumer_disconnects_total",
    "Connections closed with 4008 (slow_consumer).",
    ["reason"],
)
LANE_EVENTS_COALESCED = Counter(
    "lane_events_coalesced_total",
    "Events a receiver lane handled together with others, in one batch.",
    ["lane"],
)
LANE_EVENTS_SHED = Counter(
    "lane_events_shed_total",
    "Events a lane over its bound did not queue: their users are rebuilt from the database.",
    ["lane"],
)

F = TypeVar("F", bound=Callable[..., Any])

# How often each process samples the gauges it computes (gauge_reads) in multiprocess mode.
SAMPLE_SECONDS = 1.0
_sampled: list[tuple[Gauge, Callable[[], float]]] = []
_sampler_lock = threading.Lock()
_sampler: threading.Thread | None = None


def gauge_reads(gauge: Gauge, read: Callable[[], float]) -> None:
    """Make `read()` the gauge's value.

    In one process the scrape calls it (`set_function`), so the figure is exact. In
    multiprocess mode the scrape runs in whichever process answered and reads the others'
    files, where a function cannot be called: each process then samples its own value every
    SAMPLE_SECONDS on a daemon thread, so the figure is at most that old.
    """
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        gauge.set_function(read)
        return
    global _sampler
    with _sampler_lock:
        _sampled.append((gauge, read))
        if _sampler is None:
            _sampler = threading.Thread(target=_sample_forever, name="metrics-sampler", daemon=True)
            _sampler.start()


def sample_gauges() -> None:
    for gauge, read in list(_sampled):
        try:
            gauge.set(read())
        except Exception:  # a figure is not worth a dead sampler
            logger.exception("sampling %s failed", gauge._name)


def _sample_forever() -> None:
    while True:
        sample_gauges()
        time.sleep(SAMPLE_SECONDS)


def instrumented_receiver(name: str) -> Callable[[F], F]:
    """Time a receiver, and log and count its failures instead of letting them spread.

    Receivers run one after another inside `send_robust`; catching here too means a failure
    is logged once, with the event that caused it, whoever sends the signal.
    """

    def decorate(receiver: F) -> F:
        @functools.wraps(receiver)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return receiver(*args, **kwargs)
            except RedisError as error:
                # An outage fails every event alike: a line each, not a traceback each.
                HANDLER_FAILURES.labels(name).inc()
                event = {k: v for k, v in kwargs.items() if k != "signal"}
                logger.error("receiver %s failed, Redis unavailable (%s): %r", name, error, event)
                return None
            except Exception:
                HANDLER_FAILURES.labels(name).inc()
                event = {k: v for k, v in kwargs.items() if k != "signal"}
                logger.exception("receiver %s failed for %r", name, event)
                return None
            finally:
                HANDLER_DURATION.labels(name).observe(time.perf_counter() - started)

        return wrapper  # type: ignore[return-value]

    return decorate
