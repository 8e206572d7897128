"""Helpers for the WebSocket tests: users, rooms, tokens and connected clients."""

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from chat.models import Room
from chat.services import room_add_member
from chat.tokens import token_create
from chatproject.asgi import application

PASSWORD = "pw-for-tests-1"

# How long a test waits for something that must happen (a frame, a condition) before it fails:
# a guard against hanging, not a claim about speed, so it is generous. A waiting test returns
# as soon as the thing happens; only a failing one waits this long. On a shared 2-core machine
# a frame can take seconds when six other suites run beside this one.
PATIENCE_S = 30.0


def make_user(username: str) -> Any:
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


def make_room(name: str, members: list[Any]) -> Room:
    room = Room.objects.create(name=name)
    for user in members:
        room_add_member(room_id=room.pk, user_id=user.pk)
    return room


def token_for(user: Any) -> str:
    token, _ = token_create(username=user.username, password=PASSWORD)
    return token


class Client:
    """A connected WebSocket client that keeps every frame it receives."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.frames: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.communicator.send_json_to(frame)

    async def receive(self, timeout: float = PATIENCE_S) -> dict[str, Any]:
        frame: dict[str, Any] = await self.communicator.receive_json_from(timeout=timeout)
        self.frames.append(frame)
        return frame

    async def receive_type(self, frame_type: str, timeout: float = PATIENCE_S) -> dict[str, Any]:
        """The next frame of this type; frames of other types before it are kept."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(timeout=max(0.01, deadline - loop.time()))
            if frame["type"] == frame_type:
                return frame

    async def request(self, frame: dict[str, Any], reply_type: str) -> dict[str, Any]:
        await self.send(frame)
        return await self.receive_type(reply_type)

    async def nothing_more(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def connect(
    token: str | None, *, path: str = "/ws/chat/", query: str = ""
) -> tuple[bool, Client]:
    """`query`: more of the query string (`frames=combined`), after the token if any."""
    params = [f"token={token}"] if token is not None else []
    if query:
        params.append(query)
    url = f"{path}?{'&'.join(params)}" if params else path
    communicator = WebsocketCommunicator(application, url)
    connected, _ = await communicator.connect(timeout=PATIENCE_S)
    return connected, Client(communicator)


async def connect_user(user: Any, *, query: str = "") -> tuple[Client, dict[str, Any]]:
    """A connected client of the user and its snapshot frame."""
    token = await database_sync_to_async(token_for)(user)
    connected, client = await connect(token, query=query)
    assert connected
    snapshot = await client.receive()
    assert snapshot["type"] == "unread-state"
    return client, snapshot


async def eventually(predicate: Any, *, seconds: float = PATIENCE_S) -> None:
    """Wait until `predicate()` (sync or async) is true; fail after `seconds` (a guard)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.01)


async def close_quietly(clients: "list[Client] | Any") -> None:
    """Close every client a test opened; a failed test may leave one mid-frame or refused,
    and closing must not hide that failure."""
    for client in clients:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await client.close()
