"""Lanes: each signal receiver that does I/O runs on a thread of its own.

`send_robust` calls receivers one after another in the thread that committed (for a
consumer, the one thread all ORM work of the process shares). A receiver decorated with
`@on_lane(name)` returns at once there and runs on its own single-thread lane instead, in the
order its events arrived. So a slow or failing receiver delays neither the sender (whose reply
waits only for the commit) nor the other receivers nor anyone else's database work; this is the
event bus's "independent handlers in parallel".

A lane is bounded, in two steps (README "Back-pressure"):
- When a backlog forms, a lane with a `batch` handler gives it every queued event at once (up
  to `CHAT_LANE_BATCH`): for badges one Lua call and one publish for the lot, so a lane that
  falls behind catches up by doing less work per event, not more.
- Past `CHAT_LANE_LIMIT` queued events, a lane with a `shed` policy stops queueing: the events
  that follow are folded into one `Shed` (for badges, the users and rooms they touched), which
  runs in their place, in order, and rebuilds their effect from the database, the truth. Until
  it runs every new event folds into it, so what the lane does stays in arrival order. A lane
  with neither keeps queueing (nothing else can stand in for its events).

`flush()` waits until every lane has drained. Lanes are non-daemon threads: a management
command's events are all handled before the interpreter exits.
"""

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.db import close_old_connections
from prometheus_client import Gauge

from chatproject.metrics import LANE_EVENTS_COALESCED, LANE_EVENTS_SHED, instrumented_receiver

LANE_BACKLOG = Gauge(
    "lane_backlog",
    "Events waiting for or running in a receiver lane (of all processes).",
    ["lane"],
    multiprocess_mode="livesum",
)

F = TypeVar("F", bound=Callable[..., Any])


class Shed(Protocol):
    """What a lane keeps instead of events it cannot queue: enough to redo their effect."""

    def add(self, event: Any) -> None: ...

    def run(self) -> None: ...


_lanes: dict[str, "_Lane"] = {}
_pending = 0
_drained = threading.Condition()


def on_lane(
    name: str,
    *,
    batch: Callable[[list[Any]], None] | None = None,
    shed: Callable[[], Shed] | None = None,
) -> Callable[[F], F]:
    """Run the receiver on lane `name`, timed and failure-counted (see instrumented_receiver).

    `batch(events)` handles several queued events (each receiver call's `event` argument) at
    once; `shed()` makes the accumulator that stands in for events past the lane's bound.
    """

    def decorate(receiver: F) -> F:
        lane = _Lane(
            name,
            instrumented_receiver(name)(receiver),
            instrumented_receiver(name)(batch) if batch is not None else None,
            shed,
        )
        _lanes[name] = lane

        @functools.wraps(receiver)
        def submit(*args: Any, **kwargs: Any) -> None:
            lane.submit(args, kwargs)

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


class _Folded:
    """A Shed in a lane's queue, with how many events it stands for."""

    def __init__(self, shed: Shed) -> None:
        self.shed = shed
        self.events = 0


class _Lane:
    def __init__(
        self,
        name: str,
        receiver: Callable[..., Any],
        batch: Callable[[list[Any]], None] | None,
        shed: Callable[[], Shed] | None,
    ) -> None:
        self.name = name
        self.receiver = receiver
        self.batch = batch
        self.shed = shed
        self.items: deque[tuple[Any, Any] | _Folded] = deque()
        self.queued = 0  # events in `items`, not counting folded ones
        self.scheduled = False
        self.lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, args: Any, kwargs: Any) -> None:
        global _pending
        with _drained:
            _pending += 1
        with self.lock:
            tail = self.items[-1] if self.items else None
            if isinstance(tail, _Folded):
                self._fold(tail, kwargs)
            elif self.shed is not None and self.queued >= _limit():
                folded = _Folded(self.shed())
                self.items.append(folded)
                self._fold(folded, kwargs)
            else:
                self.items.append((args, kwargs))
                self.queued += 1
                LANE_BACKLOG.labels(self.name).inc()
            if not self.scheduled:
                self.scheduled = True
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix=f"lane-{self.name}"
                    )
                self._executor.submit(self._drain)

    def _fold(self, folded: _Folded, kwargs: Any) -> None:
        folded.shed.add(kwargs["event"])
        folded.events += 1
        LANE_EVENTS_SHED.labels(self.name).inc()

    def _drain(self) -> None:
        while True:
            with self.lock:
                if not self.items:
                    self.scheduled = False
                    return
                head = self.items.popleft()
                taken: list[tuple[Any, Any]] = []
                if not isinstance(head, _Folded):
                    taken.append(head)
                    limit = _batch_limit() if self.batch is not None else 1
                    while (
                        len(taken) < limit and self.items and not isinstance(self.items[0], _Folded)
                    ):
                        taken.append(self.items.popleft())  # type: ignore[arg-type]
                    self.queued -= len(taken)
            self._run(head, taken)

    def _run(self, head: tuple[Any, Any] | _Folded, taken: list[tuple[Any, Any]]) -> None:
        global _pending
        done = head.events if isinstance(head, _Folded) else len(taken)
        try:
            # A lane is a long-lived thread: like a request, each run gets a usable connection.
            close_old_connections()
            if isinstance(head, _Folded):
                instrumented_receiver(self.name)(head.shed.run)()
            elif len(taken) == 1 or self.batch is None:
                for args, kwargs in taken:
                    self.receiver(*args, **kwargs)
            else:
                LANE_EVENTS_COALESCED.labels(self.name).inc(len(taken))
                self.batch([kwargs["event"] for _, kwargs in taken])
        finally:
            close_old_connections()
            if taken:
                LANE_BACKLOG.labels(self.name).dec(len(taken))
            with _drained:
                _pending -= done
                _drained.notify_all()


def _limit() -> int:
    return int(getattr(settings, "CHAT_LANE_LIMIT", 2000))


def _batch_limit() -> int:
    return max(1, int(getattr(settings, "CHAT_LANE_BATCH", 200)))
