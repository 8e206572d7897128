"""Prometheus metrics of the push path (GET /metrics, or the worker's --metrics-port)."""

from prometheus_client import Counter, Gauge, Histogram

PUSH_SENT = Counter("push_sent_total", "Pushes a push service accepted.", ["kind"])
PUSH_SKIPPED = Counter(
    "push_skipped_total",
    "Pushes not sent: read in time, viewing the room, room muted, not mentioned (level "
    "mentions), device deactivated, message deleted.",
    ["reason"],
)
PUSH_FAILED = Counter(
    "push_failed_total", "Pushes given up (refused, or retried to the last attempt).", ["kind"]
)
PUSH_RETRIED = Counter("push_retried_total", "Push attempts that will be tried again.", ["kind"])
PUSH_GONE = Counter("push_gone_total", "Devices the push service said are gone.", ["kind"])
PUSH_QUEUE_DEPTH = Gauge(
    "push_queue_depth",
    "Push jobs not finished (scheduled, queued, running), per the worker that counted last.",
    # Every worker counts the one shared queue: the latest count is the figure, not a sum.
    multiprocess_mode="livemostrecent",
)
PUSH_LATENCY = Histogram(
    "push_delivery_latency_seconds",
    "From a message's creation until a push service accepted its push (grace delay included).",
    buckets=(0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60, 120, 300),
)
PUSH_REQUEST_SECONDS = Histogram(
    "push_request_seconds",
    "Time a push backend took for one push.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
