"""Redis stopped under two live daphne processes while clients keep sending, then started
empty: every open connection shows the database's counts again on its own, without
reconnecting (chat.live, chatproject.redis_watch)."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from websockets.exceptions import InvalidStatus

from badges.selectors import unread_counts_from_db
from chat.models import Message
from chat.tests.helpers import PATIENCE_S, make_room, make_user, token_for
from chat.tests.processes import Daphne, OwnRedis, WsClient, start_servers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 10


def _truth(user_id: int) -> dict[int, int]:
    return {room: unread for room, (_, unread) in unread_counts_from_db(user_id).items()}


def _converged(client: WsClient, truth: dict[int, int], since: int) -> bool:
    """The newest count the connection shows, and its newest snapshot, are the truth."""
    snapshots = [f for f in client.frames[since:] if f["type"] == "unread-state"]
    if not snapshots:
        return False
    rooms = {room["roomId"]: room["unreadCount"] for room in snapshots[-1]["rooms"]}
    return rooms == truth and client.shown_total()[1] == sum(truth.values())


async def _keep_sending(
    client: WsClient, room_id: int, tag: str, stop: asyncio.Event, replies: list[Any]
) -> None:
    step = 0
    while not stop.is_set():
        step += 1
        key = f"{tag}-{step}"
        frame = {"type": "send-message", "roomId": room_id, "message": key, "clientMessageId": key}
        reply = await client.request(frame, "message-sent")
        replies.append((key, reply))
        await asyncio.sleep(0.4)


async def test_every_connection_converges_after_redis_comes_back_empty(
    record_property: Callable[[str, object], None],
) -> None:
    redis = OwnRedis()
    redis.start()
    servers = []
    clients: list[tuple[Any, WsClient]] = []
    try:
        servers = await asyncio.to_thread(start_servers, 2, REDIS_URL=redis.url)
        people = await database_sync_to_async(lambda: [make_user(f"u{i}") for i in range(4)])()
        rooms = await database_sync_to_async(
            lambda: [make_room("a", people), make_room("b", people[:3])]
        )()
        for person in people:
            for n, server in enumerate(servers):
                token = await database_sync_to_async(token_for)(person)
                client = await WsClient.open(server.ws_url(token), f"{person.username}@{n}")
                clients.append((person, client))
        # Some connections view a room, so presence must come back too.
        await clients[0][1].request({"type": "join-room", "roomId": rooms[1].pk}, "joined-room")
        await clients[3][1].request({"type": "join-room", "roomId": rooms[0].pk}, "joined-room")
        replies: list[Any] = []
        before = asyncio.Event()
        before.set()
        for i, (_, client) in enumerate(clients[:4]):
            await _keep_sending(client, rooms[0].pk, f"pre{i}", before, replies)

        # Redis goes away while everyone keeps sending.
        stop = asyncio.Event()
        senders = [
            asyncio.ensure_future(_keep_sending(client, rooms[i % 2].pk, f"out{i}", stop, replies))
            for i, (person, client) in enumerate(clients)
            if i % 2 == 0 or person is not people[3]  # u3 is only in room a
        ]
        redis.stop()
        await asyncio.sleep(OUTAGE_SECONDS)
        stop.set()
        await asyncio.gather(*senders)
        # A new connection is refused (the client retries) rather than left half-open.
        token = await database_sync_to_async(token_for)(people[0])
        with pytest.raises(InvalidStatus) as refused:
            await WsClient.open(servers[0].ws_url(token), "during-outage")
        assert refused.value.response.status_code == 500
        # Joining needs Redis (the room's group, presence): refused, and nothing is saved.
        unread_before = await database_sync_to_async(_truth)(people[3].pk)
        joined = await clients[6][1].request(
            {"type": "join-room", "roomId": rooms[0].pk}, "joined-room"
        )
        assert (joined["type"], joined["code"]) == ("error", "server_error"), joined
        assert await database_sync_to_async(_truth)(people[3].pk) == unread_before
        # Reading still works and answers with the database's counts.
        reader, device = clients[7]
        latest = await database_sync_to_async(
            lambda: Message.objects.filter(room=rooms[0]).latest("id").pk
        )()
        read = await device.request(
            {"type": "mark-read", "roomId": rooms[0].pk, "messageId": latest},
            "total-unread-count-updated",
        )
        assert read["type"] == "total-unread-count-updated", read
        assert read["totalUnreadCount"] == sum(
            (await database_sync_to_async(_truth)(reader.pk)).values()
        )

        # Back, empty; nobody does anything from here on.
        marks = {client.name: len(client.frames) for _, client in clients}
        redis.start()
        restarted = time.monotonic()
        truths = {person.pk: await database_sync_to_async(_truth)(person.pk) for person in people}
        converged_at: dict[str, float] = {}
        deadline = restarted + 60
        while len(converged_at) < len(clients) and time.monotonic() < deadline:
            for person, client in clients:
                if client.name not in converged_at and _converged(
                    client, truths[person.pk], marks[client.name]
                ):
                    converged_at[client.name] = time.monotonic() - restarted
            await asyncio.sleep(0.05)
        slowest = max(converged_at.values(), default=float("nan"))
        record_property("convergence_seconds", round(slowest, 2))
        print(
            f"\n{len(converged_at)}/{len(clients)} connections converged, the last"
            f" {slowest:.2f} s after Redis restarted"
        )
        assert len(converged_at) == len(clients), (
            f"stale: {sorted(set(c.name for _, c in clients) - set(converged_at))}\n"
            + servers[0].log_tail()
        )

        # Nothing was closed, and nothing after the restart was an error.
        for _, client in clients:
            assert client.closed is None, client.name
            assert not [f for f in client.frames[marks[client.name] :] if f["type"] == "error"]

        # The pub/sub layer re-subscribed its groups: a new message badges every device again.
        sent = await clients[0][1].request(
            {
                "type": "send-message",
                "roomId": rooms[0].pk,
                "message": "after",
                "clientMessageId": "after",
            },
            "message-sent",
        )
        assert sent["type"] == "message-sent", sent
        # u1's second device views room a: its presence came back, so it is shown the message,
        # which moves u1's read pointer past everything in room a.
        shown = await clients[3][1].receive_type("chat-message", timeout=PATIENCE_S)
        assert shown["message"]["id"] == sent["messageId"]
        assert (await database_sync_to_async(_truth)(people[1].pk))[rooms[0].pk] == 0
        for person, client in clients:
            expected = sum((await database_sync_to_async(_truth)(person.pk)).values())
            while client.shown_total()[1] != expected:
                await client.receive_type("total-unread-count-updated", timeout=PATIENCE_S)

        # Every send got a clear answer: saved and acknowledged, or refused and not saved.
        outage = [(key, reply) for key, reply in replies if key.startswith("out")]
        assert outage
        saved = await database_sync_to_async(
            lambda: dict(Message.objects.values_list("client_message_id", "id"))
        )()
        for key, reply in outage:
            if reply["type"] == "message-sent":
                assert saved[key] == reply["messageId"]
            else:
                assert key not in saved, reply
        record_property("outage_sends", len(outage))
        record_property(
            "outage_sends_saved", sum(reply["type"] == "message-sent" for _, reply in outage)
        )
    finally:
        for _, client in clients:
            await client.close()
        for server in servers:
            server.stop()
        redis.stop()


async def test_a_restart_that_keeps_stale_data_is_noticed_and_settled(tmp_path: Path) -> None:
    """Redis restarted between two checks with its data on disk: the counters it kept missed
    what happened meanwhile. The watch sees the new run id and settles them."""
    redis = OwnRedis(data_dir=tmp_path)
    redis.start()
    servers: list[Daphne] = []
    clients: list[WsClient] = []
    try:
        # Checks far apart, so the restart falls between two of them.
        servers = await asyncio.to_thread(
            start_servers, 1, REDIS_URL=redis.url, CHAT_REDIS_WATCH_SECONDS="4"
        )
        alice, bob = await database_sync_to_async(lambda: [make_user("alice"), make_user("bob")])()
        room = await database_sync_to_async(make_room)("r", [alice, bob])
        token = await database_sync_to_async(token_for)(alice)
        clients.append(await WsClient.open(servers[0].ws_url(token), "alice"))
        assert clients[0].shown_total()[1] == 0
        # Saved behind Redis' back: its counters (kept on disk) do not know.
        await database_sync_to_async(
            lambda: Message.objects.bulk_create(
                [
                    Message(room=room, sender=bob, body="x", client_message_id=f"m{i}")
                    for i in range(2)
                ]
            )
        )()
        mark = len(clients[0].frames)
        redis.stop()
        redis.start()
        snapshot = await clients[0].receive_type("unread-state", timeout=30)
        assert snapshot["totalUnreadCount"] == 2
        assert len(clients[0].frames) > mark
        metrics = await asyncio.to_thread(servers[0].get_text, "/metrics")
        assert 'redis_recoveries_total{reason="restarted"} 1.0' in metrics or (
            'redis_recoveries_total{reason="reconnected"} 1.0' in metrics  # a check fell in the gap
        )
    finally:
        for client in clients:
            await client.close()
        for server in servers:
            server.stop()
        redis.stop()
