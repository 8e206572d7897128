"""Revocation across processes: two real daphne servers, a client on each, and the revocation
made in this (third) process. Each server's consumer must close with 4003, within a second.

The servers get this test run's database, Redis and key prefix, so they see what the test
writes and their channel layers meet this process's.
"""

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from chat import revocation
from chat.events import CLOSE_REVOKED
from chat.models import AuthToken
from chat.tests.helpers import PATIENCE_S, make_user, token_for
from chat.tests.processes import start_servers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def two_servers() -> Iterator[list[int]]:
    servers = start_servers(2)
    try:
        yield [server.port for server in servers]
    finally:
        for server in servers:
            server.stop()


def _open(clients: ExitStack, port: int, token: str) -> ClientConnection:
    url = f"ws://127.0.0.1:{port}/ws/chat/?token={token}"
    client = clients.enter_context(connect(url, open_timeout=PATIENCE_S))
    assert '"unread-state"' in str(client.recv(timeout=PATIENCE_S))
    return client


def _seconds_until_closed(client: ClientConnection, started: float) -> tuple[int | None, float]:
    """The close code and how long after `started` it came (frames before it are skipped)."""
    try:
        while True:
            client.recv(timeout=PATIENCE_S)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        return code, time.monotonic() - started
    except TimeoutError:
        return None, time.monotonic() - started


def test_revoking_closes_connections_on_every_server_process(two_servers: list[int]) -> None:
    alice = make_user("alice")
    token = token_for(alice)
    token_id = AuthToken.objects.get().pk
    other_token = token_for(alice)
    with ExitStack() as clients:
        revoked = [_open(clients, port, token) for port in two_servers]
        kept = _open(clients, two_servers[1], other_token)
        started = time.monotonic()
        revocation.token_revoke(token_ids=[token_id])
        results = [_seconds_until_closed(client, started) for client in revoked]
        print(f"token revoked: closed after {[round(s, 3) for _, s in results]} s")
        assert [code for code, _ in results] == [CLOSE_REVOKED, CLOSE_REVOKED]
        # "Within a second" is the requirement (about 0.05 s measured here): printed, not
        # asserted, since on a loaded machine a time limit fails with the load, not the code.
        kept.send('{"type": "ping"}')
        assert '"pong"' in str(kept.recv(timeout=PATIENCE_S))

        started = time.monotonic()
        alice.is_active = False
        alice.save()
        code, seconds = _seconds_until_closed(kept, started)
        print(f"user deactivated: closed after {seconds:.3f} s")
        assert code == CLOSE_REVOKED
