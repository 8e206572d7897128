"""Settings of the benchmark's server processes: the project's, plus what the bench varies.

The project reads these through `getattr(settings, ...)` but settings.py does not take them
from the environment, so the bench does it here. The ASGI app adds the sequential baseline.
"""

import os

from chatproject.settings import *  # noqa: F403

ASGI_APPLICATION = "bench.asgi.application"

# Benchmark senders go far beyond a human's pace; the limiter is not what is measured.
CHAT_RATE_LIMIT_MESSAGES = int(os.environ.get("CHAT_RATE_LIMIT_MESSAGES", "0"))
NOTIFICATIONS_PUSH_BACKEND = os.environ.get(
    "NOTIFICATIONS_PUSH_BACKEND", "bench.pushes.RecordingDelayedPushBackend"
)
NOTIFICATIONS_PUSH_DELAY_SECONDS = float(os.environ.get("NOTIFICATIONS_PUSH_DELAY_SECONDS", "0.5"))
# One HTTP/1.1 connection per push in flight: 2,000 pushes/s at 0.5 s each need more than the
# default 1,000 (bench.push_throughput sets it to its --concurrency).
WEBPUSH_MAX_CONNECTIONS = int(os.environ.get("WEBPUSH_MAX_CONNECTIONS", "1000"))

# An experiment knob, off by default: the GIL switch interval of the server processes (5 ms
# by default), to test how much of the latency is threads waiting for the GIL.
if os.environ.get("BENCH_SWITCH_INTERVAL"):
    import sys

    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
