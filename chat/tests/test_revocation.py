"""Revoking a credential closes the WebSocket connections it opened (code 4003)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client as HttpClient
from django.urls import reverse

from chat import revocation
from chat.events import CLOSE_REVOKED, close_connections, user_group
from chat.models import AuthToken
from chat.tests.helpers import PATIENCE_S, Client, close_quietly, connect, make_user, token_for
from chatproject.asgi import application
from chatproject.channel_layer import PipelinedPubSubChannelLayer

pytestmark = pytest.mark.django_db(transaction=True)

# A guard, not a claim: the requirement is "within a second", which the two-process test
# (test_revocation_process.py) states and the benchmark measures.
CLOSE_TIMEOUT = PATIENCE_S


async def close_code(client: Client, timeout: float = CLOSE_TIMEOUT) -> int | None:
    """The code the server closed this connection with, skipping frames sent before it;
    None if it stays open."""
    # receive_nothing, not a timed receive_output: a timeout there cancels the application.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await client.communicator.receive_nothing(timeout=0.05, interval=0.01):
            continue
        output = await client.communicator.receive_output()
        if output["type"] == "websocket.close":
            return int(output.get("code", 1000))
    return None


async def still_open(client: Client) -> bool:
    await client.send({"type": "ping"})
    return (await client.receive_type("pong"))["type"] == "pong"


@pytest.fixture
async def opened() -> AsyncIterator[list[Client]]:
    clients: list[Client] = []
    yield clients
    await close_quietly(clients)


async def connect_with(token: str, opened: list[Client]) -> Client:
    connected, client = await connect(token)
    assert connected
    opened.append(client)
    assert (await client.receive())["type"] == "unread-state"
    return client


async def connect_with_session(user: Any, opened: list[Client]) -> tuple[Client, HttpClient]:
    http = HttpClient()
    await database_sync_to_async(http.force_login)(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={http.cookies[settings.SESSION_COOKIE_NAME].value}"
    communicator = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"cookie", cookie.encode())]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    client = Client(communicator)
    opened.append(client)
    assert (await client.receive())["type"] == "unread-state"
    return client, http


def token_id_of(user: Any) -> int:
    return int(AuthToken.objects.filter(user=user).latest("pk").pk)


async def test_revoking_a_token_closes_only_its_connections(opened: list[Client]) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    first = await connect_with(await database_sync_to_async(token_for)(alice), opened)
    revoked_id = await database_sync_to_async(token_id_of)(alice)
    other = await connect_with(await database_sync_to_async(token_for)(alice), opened)

    revoked = await database_sync_to_async(revocation.token_revoke)(token_ids=[revoked_id])

    assert revoked == 1
    assert await close_code(first) == CLOSE_REVOKED
    assert await still_open(other)


async def test_the_admin_action_revokes_and_closes(opened: list[Client]) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    client = await connect_with(await database_sync_to_async(token_for)(alice), opened)

    def revoke_in_admin() -> int:
        root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
        http = HttpClient()
        http.force_login(root)
        return http.post(
            reverse("admin:chat_authtoken_changelist"),
            {"action": "revoke_tokens", "_selected_action": [token_id_of(alice)]},
        ).status_code

    assert await database_sync_to_async(revoke_in_admin)() == 302
    assert await close_code(client) == CLOSE_REVOKED


async def test_a_token_revoked_or_deleted_by_hand_closes_its_connections(
    opened: list[Client],
) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    edited = await connect_with(await database_sync_to_async(token_for)(alice), opened)
    edited_id = await database_sync_to_async(token_id_of)(alice)
    deleted = await connect_with(await database_sync_to_async(token_for)(alice), opened)
    deleted_id = await database_sync_to_async(token_id_of)(alice)

    def edit_and_delete() -> None:
        from django.utils import timezone

        token = AuthToken.objects.get(pk=edited_id)
        token.revoked_at = timezone.now()
        token.save()  # as the admin's change form does
        AuthToken.objects.get(pk=deleted_id).delete()

    await database_sync_to_async(edit_and_delete)()
    assert await close_code(edited) == CLOSE_REVOKED
    assert await close_code(deleted) == CLOSE_REVOKED


@pytest.mark.parametrize("how", ["save", "service", "delete"])
async def test_deactivating_a_user_closes_all_their_connections(
    opened: list[Client], how: str
) -> None:
    alice, bob = (
        await database_sync_to_async(make_user)("alice"),
        await database_sync_to_async(make_user)("bob"),
    )
    by_token = await connect_with(await database_sync_to_async(token_for)(alice), opened)
    by_session, _ = await connect_with_session(alice, opened)
    bystander = await connect_with(await database_sync_to_async(token_for)(bob), opened)

    def deactivate() -> None:
        if how == "save":
            alice.is_active = False
            alice.save()
        elif how == "service":
            assert revocation.user_deactivate(user_ids=[alice.pk]) == 1
        else:
            alice.delete()

    await database_sync_to_async(deactivate)()
    assert await close_code(by_token) == CLOSE_REVOKED
    assert await close_code(by_session) == CLOSE_REVOKED
    assert await still_open(bystander)


async def test_logging_out_closes_the_sessions_connections_only(opened: list[Client]) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    by_token = await connect_with(await database_sync_to_async(token_for)(alice), opened)
    logged_out, http = await connect_with_session(alice, opened)
    other_session, _ = await connect_with_session(alice, opened)

    await database_sync_to_async(http.logout)()

    assert await close_code(logged_out) == CLOSE_REVOKED
    assert await still_open(by_token)
    assert await still_open(other_session)


async def test_a_close_published_by_another_process_reaches_the_connection(
    opened: list[Client],
) -> None:
    # The channel layer is Redis pub/sub: a second layer instance, as another server process
    # would hold, publishes to the same group the consumer here subscribed to.
    alice = await database_sync_to_async(make_user)("alice")
    client = await connect_with(await database_sync_to_async(token_for)(alice), opened)
    token_id = await database_sync_to_async(token_id_of)(alice)
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    other_process = PipelinedPubSubChannelLayer(**config)

    other_process.publish_to_groups([(user_group(alice.pk), dict(close_connections()))])
    assert await close_code(client, timeout=0.5) is None  # names no credential of this socket
    other_process.publish_to_groups(
        [(user_group(alice.pk), dict(close_connections(token_ids=[token_id])))]
    )
    assert await close_code(client) == CLOSE_REVOKED


async def test_a_revocation_racing_the_handshake_still_closes(
    opened: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The middleware saw a live token; it is revoked before the consumer joins its group, so
    # the published close cannot reach it: the check after joining must.
    alice = await database_sync_to_async(make_user)("alice")
    token = await database_sync_to_async(token_for)(alice)
    from chat import middleware, tokens

    seen = await database_sync_to_async(tokens.live_token)(token)
    assert seen is not None
    await database_sync_to_async(AuthToken.objects.filter(pk=seen.pk).update)(
        revoked_at=seen.created_at
    )
    monkeypatch.setattr(middleware, "live_token", lambda _token: seen)

    connected, client = await connect(token)
    assert not connected  # refused like any dead credential (HTTP 403)


async def test_a_deleted_or_expired_session_closes_its_connections(opened: list[Client]) -> None:
    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.utils import timezone

    alice = await database_sync_to_async(make_user)("alice")
    deleted, deleted_http = await connect_with_session(alice, opened)
    expired, expired_http = await connect_with_session(alice, opened)
    kept, _ = await connect_with_session(alice, opened)

    def key_of(http: HttpClient) -> str:
        return str(http.cookies[settings.SESSION_COOKIE_NAME].value)

    def delete_and_expire() -> None:
        Session.objects.get(session_key=key_of(deleted_http)).delete()  # as staff would
        Session.objects.filter(session_key=key_of(expired_http)).update(
            expire_date=timezone.now() - timedelta(seconds=1)
        )
        call_command("clearsessions")

    await database_sync_to_async(delete_and_expire)()
    assert await close_code(deleted) == CLOSE_REVOKED
    assert await close_code(expired) == CLOSE_REVOKED
    assert await still_open(kept)
