"""The push worker's part of /healthz: its heartbeat's age and the queue depth."""

from typing import Any

from notifications import queue

# A worker beats every few seconds; one silent this long is presumed stopped.
STALE_AFTER_SECONDS = 30.0


def push_health() -> dict[str, Any]:
    age = queue.heartbeat_age_seconds()
    if age is None:
        worker = "none"
    else:
        worker = "ok" if age < STALE_AFTER_SECONDS else "stale"
    return {
        "worker": worker,
        "heartbeatAgeSeconds": None if age is None else round(age, 1),
        "queueDepth": queue.queue_depth(),
    }
