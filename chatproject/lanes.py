"""Lanes: each signal receiver that does I/O runs on a thread of its own.

`send_robust` calls receivers one after another in the thread that committed (for a
consumer, the one thread all ORM work of the process shares). A receiver decorated with
`@on_lane(name)` returns at once there and runs on its own single-thread lane instead, in the
order its events arrived. So a slow or failing receiver delays neither the sender (whose reply
waits only for the commit) nor the other receivers nor anyone else's database work; this is the
event bus's "independent handlers in parallel".

`flush()` waits until every lane has drained. Lanes are non-daemon threads: a management
command's events are all handled before the interpreter exits.
"""

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections
from prometheus_client import Gauge

from chatproject.metrics import instrumented_receiver

LANE_BACKLOG = Gauge("lane_backlog", "Events waiting for or running in a receiver lane.", ["lane"])

F = TypeVar("F", bound=Callable[..., Any])

_lanes: dict[str, ThreadPoolExecutor] = {}
_lanes_lock = threading.Lock()
_pending = 0
_drained = threading.Condition()


def on_lane(name: str) -> Callable[[F], F]:
    """Run the receiver on lane `name`, timed and failure-counted (see instrumented_receiver)."""

    def decorate(receiver: F) -> F:
        instrumented = instrumented_receiver(name)(receiver)

        @functools.wraps(receiver)
        def submit(*args: Any, **kwargs: Any) -> None:
            global _pending
            with _drained:
                _pending += 1
            LANE_BACKLOG.labels(name).inc()
            _lane(name).submit(_run, name, instrumented, args, kwargs)

        return submit  # type: ignore[return-value]

    return decorate


def flush(timeout: float = 5.0) -> bool:
    """Wait until every lane is idle; False if `timeout` passed first."""
    deadline = time.monotonic() + timeout
    with _drained:
        while _pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _drained.wait(remaining)
    return True


def _lane(name: str) -> ThreadPoolExecutor:
    with _lanes_lock:
        if name not in _lanes:
            _lanes[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lane-{name}")
        return _lanes[name]


def _run(name: str, receiver: Callable[..., Any], args: Any, kwargs: Any) -> None:
    global _pending
    try:
        # A lane is a long-lived thread: like a request, each event gets a usable connection.
        close_old_connections()
        receiver(*args, **kwargs)
    finally:
        close_old_connections()
        LANE_BACKLOG.labels(name).dec()
        with _drained:
            _pending -= 1
            _drained.notify_all()
