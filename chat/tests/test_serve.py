"""`manage.py serve` as a real process: it serves the page and the socket with one worker or
several sharing one port, stops cleanly on SIGTERM or SIGINT, and stops with an error when a
worker dies."""

import signal
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from channels.db import database_sync_to_async
from django.core.management import CommandError, call_command

from chat.tests.helpers import PATIENCE_S, make_room, make_user, token_for
from chat.tests.processes import Daphne, WsClient, free_port, server_env
from chatproject.servers import listening_socket

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start_serve(workers: int) -> Daphne:
    server = Daphne(server_env(), f"serve{workers}", workers=workers)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def serve_two() -> Iterator[Daphne]:
    server = start_serve(2)
    yield server
    server.stop()


def workers_of(server: Daphne) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children()
    return [child for child in children if "daphne" in child.cmdline()]


def exit_code(server: Daphne) -> int:
    return server.process.wait(timeout=PATIENCE_S)


def assert_port_free(port: int) -> None:
    """Nothing listens on it any more: serve could start on it again."""
    listening_socket("127.0.0.1", port).close()


def assert_all_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=PATIENCE_S)
    assert alive == []


@pytest.mark.parametrize("workers", [1, 2])
async def test_serves_the_page_and_the_socket(workers: int) -> None:
    server = await database_sync_to_async(start_serve)(workers)
    try:
        assert len(workers_of(server)) == workers
        page = await database_sync_to_async(server.get_text)("/login/")
        assert "Sign in" in page
        alice, bob = await database_sync_to_async(lambda: [make_user("alice"), make_user("bob")])()
        room = await database_sync_to_async(make_room)("r", [alice, bob])
        clients = []
        for user in (alice, bob):
            token = await database_sync_to_async(token_for)(user)
            clients.append(await WsClient.open(server.ws_url(token), user.username))
        receiver, sender = clients
        sent = await sender.request(
            {"type": "send-message", "roomId": room.pk, "message": "hi", "clientMessageId": "1"},
            "message-sent",
        )
        assert sent["type"] == "message-sent"
        badge = await receiver.receive_type("total-unread-count-updated")
        assert badge["totalUnreadCount"] == 1
        for client in clients:
            await client.close()
    finally:
        await database_sync_to_async(server.stop)()
    assert server.process.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_ends_every_worker_and_frees_the_port(
    serve_two: Daphne, signum: signal.Signals
) -> None:
    workers = workers_of(serve_two)
    user = await database_sync_to_async(make_user)("alice")
    token = await database_sync_to_async(token_for)(user)
    # A connection still open: the stop does not wait for clients to leave.
    client = await WsClient.open(serve_two.ws_url(token), "alice")

    serve_two.process.send_signal(signum)

    assert await database_sync_to_async(exit_code)(serve_two) == 0
    assert_all_gone(workers)
    assert_port_free(serve_two.port)
    await client.close()
    assert "Stopped" in serve_two.log_tail()


def test_a_worker_that_dies_stops_the_group_with_an_error(serve_two: Daphne) -> None:
    workers = workers_of(serve_two)
    workers[0].kill()

    assert exit_code(serve_two) != 0
    assert_all_gone(workers)
    assert_port_free(serve_two.port)
    assert f"daphne worker {workers[0].pid} exited with -9" in serve_two.log_tail()


def test_a_port_in_use_is_refused_before_any_worker_starts() -> None:
    taken = listening_socket("127.0.0.1", free_port())
    port = taken.getsockname()[1]
    with taken, pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}: .*in use"):
        call_command("serve", port=port)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "--workers must be at least 1, not 0"),
        ({"host": "no-such-host.invalid"}, "cannot use host 'no-such-host.invalid'"),
    ],
)
def test_bad_arguments_are_refused_clearly(options: dict[str, Any], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("serve", port=free_port(), **options)
