"""Fixtures the chat tests share."""

from collections.abc import AsyncIterator

import pytest

from chat.tests.helpers import close_quietly
from chat.tests.test_consumer_protocol import Connections


@pytest.fixture
async def ws() -> AsyncIterator[Connections]:
    """In-process WebSocket connections (test_consumer_protocol.Connections), closed after
    the test; test_consumer_errors.py keeps a `ws` of its own."""
    connections = Connections()
    yield connections
    await close_quietly(connections.clients)
