"""Fixtures the chat tests share."""

from collections.abc import AsyncIterator, Iterator

import pytest

from chat.tests.helpers import close_quietly
from chat.tests.processes import Daphne, start_servers
from chat.tests.test_consumer_protocol import Connections


@pytest.fixture
async def ws() -> AsyncIterator[Connections]:
    """In-process WebSocket connections (test_consumer_protocol.Connections), closed after
    the test; test_consumer_errors.py keeps a `ws` of its own."""
    connections = Connections()
    yield connections
    await close_quietly(connections.clients)


@pytest.fixture(scope="module")
def servers(django_db_setup: None) -> Iterator[list[Daphne]]:
    """Two real daphne processes on the test database and Redis, for one test module."""
    pair = start_servers(2)
    yield pair
    for server in pair:
        server.stop()
