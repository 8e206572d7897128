"""`manage.py serve`: the production server, daphne, as N processes sharing one socket.

Why daphne: measured side by side with uvicorn and granian on the project's own bench goals,
neither was clearly cheaper, and the slow-client guard (chatproject/backpressure.py) reads
daphne's own write buffers (docs/performance.md, "The ASGI server").

Why the parent binds the socket: it binds and listens once, then starts N `daphne --fd`
workers that inherit that one listening socket; the kernel hands each new connection to one
of them. N processes thus share one port with no proxy in front to split it, a port in use is
reported once before any worker starts, and connections that arrive while workers are still
starting wait in the backlog instead of being refused.

Why no restart: a worker that dies unexpectedly stops the whole group with a non-zero exit.
The supervisor (systemd's `Restart=on-failure`) restarts all of it, which also starts a fresh
PROMETHEUS_MULTIPROC_DIR, rather than the parent hiding a crash loop behind silent restarts.

The parent only waits: for SIGTERM or SIGINT, which it forwards to every worker as SIGTERM
(workers run in a session of their own, so a terminal's Ctrl-C reaches them once, through
here), or for a worker's exit (SIGCHLD). Signals reach the loop through a wakeup socket, so it
sleeps in `select` instead of polling.
"""

import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from chatproject.embedded_redis import _die_with_parent

DEFAULT_APPLICATION = "chatproject.asgi:application"
# Longer than daphne needs to close its sockets; shorter than systemd's 90 s stop timeout.
STOP_GRACE_SECONDS = 20.0
ROOT = Path(__file__).resolve().parent.parent


class ServeError(Exception):
    """Arguments that cannot be served: said once, before any worker starts."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (IPv4: daphne's `--fd` adopts no other family)."""
    try:
        address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
    except socket.gaierror as error:
        raise ServeError(f"cannot use host {host!r} (an IPv4 address or name): {error}") from error
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # A restart may bind at once although the last run's connections linger in TIME_WAIT;
        # a port another process listens on is still refused.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(socket.SOMAXCONN)
    except OSError as error:
        listener.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    return listener


def worker_command(listener: socket.socket, application: str) -> list[str]:
    return [sys.executable, "-m", "daphne", "--fd", str(listener.fileno()), application]


def serve(
    *,
    host: str,
    port: int,
    workers: int,
    application: str = DEFAULT_APPLICATION,
    stop_grace: float = STOP_GRACE_SECONDS,
    say: Callable[[str], None] = print,
) -> int:
    """Serve until SIGTERM or SIGINT (then 0) or until a worker dies (then 1).

    Must run in the main thread: it handles signals.
    """
    if workers < 1:
        raise ServeError(f"--workers must be at least 1, not {workers}")
    listener = listening_socket(host, port)
    wakeup_in, wakeup_out = socket.socketpair()
    wakeup_in.setblocking(False)
    wakeup_out.setblocking(False)
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
    previous = {signum: signal.signal(signum, _note) for signum in handled}
    previous_wakeup = signal.set_wakeup_fd(wakeup_out.fileno())
    children: list[subprocess.Popen[bytes]] = []
    try:
        with listener:
            command = worker_command(listener, application)
            for _ in range(workers):  # one by one: those started are stopped if one fails
                children.append(_start(command, listener))
        # The workers hold the socket now; the parent's copy is closed, so the port is free
        # as soon as the last worker is gone.
        pids = ", ".join(str(child.pid) for child in children)
        say(
            f"Serving {application} on {host}:{port} with {workers} daphne worker(s) "
            f"(pids {pids}); SIGTERM or Ctrl-C stops"
        )
        dead = _wait_for_stop(wakeup_in, children)
        if dead is None:
            say(f"Stopping {workers} worker(s) (up to {stop_grace:.0f} s)")
    finally:
        _stop(children, stop_grace)
        signal.set_wakeup_fd(previous_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        wakeup_in.close()
        wakeup_out.close()
    if dead is not None:
        say(f"daphne worker {dead.pid} exited with {dead.returncode}: stopped the others")
        return 1
    say("Stopped")
    return 0


def _note(signum: int, frame: object) -> None:
    """Signals only wake the loop (through the wakeup socket); the loop decides."""


def _start(command: list[str], listener: socket.socket) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        pass_fds=(listener.fileno(),),
        start_new_session=True,
        # Linux: a worker stops when the parent dies, even by SIGKILL, so none is orphaned.
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def _wait_for_stop(
    wakeup: socket.socket, children: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes] | None:
    """Block until SIGTERM/SIGINT (None) or until a worker has exited (that worker)."""
    while True:
        # Checked before every sleep: a worker may have died before SIGCHLD was handled.
        for child in children:
            if child.poll() is not None:
                return child
        select.select([wakeup], [], [])
        try:
            received = wakeup.recv(64)
        except BlockingIOError:
            continue
        if signal.SIGTERM in received or signal.SIGINT in received:
            return None


def _stop(children: list[subprocess.Popen[bytes]], grace: float) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
