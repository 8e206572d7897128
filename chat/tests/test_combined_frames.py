"""`?frames=combined` against a real daphne (docs/protocol-extensions.md): one frame per room
update and its badge, default frames unchanged beside it; with the fan-out hub (direct
writes) and without it (`CHAT_FANOUT_HUB=0`, the consumer's own path)."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.tests.helpers import make_room, make_user, token_for
from chat.tests.processes import WsClient, start_servers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("hub", ["1", "0"])
async def test_a_combined_client_gets_one_frame_and_a_default_one_two(hub: str) -> None:
    (server,) = await asyncio.to_thread(start_servers, 1, CHAT_FANOUT_HUB=hub)
    clients: list[WsClient] = []
    try:
        people = await database_sync_to_async(lambda: [make_user(f"p{i}") for i in range(3)])()
        room = await database_sync_to_async(make_room)("general", people)
        tokens = [await database_sync_to_async(token_for)(person) for person in people]
        sender = await WsClient.open(server.ws_url(tokens[0]), "sender")
        combined = await WsClient.open(server.ws_url(tokens[1]) + "&frames=combined", "combined")
        default = await WsClient.open(server.ws_url(tokens[2]), "default")
        clients = [sender, combined, default]
        for n in (1, 2):
            frame = {"type": "send-message", "roomId": room.pk, "message": f"m{n}",
                     "clientMessageId": f"c{n}"}  # fmt: skip
            await sender.request(frame, "message-sent")
            one = await combined.receive_type("chat-room-updated")
            assert one["combines"] == ["chat-room-updated", "total-unread-count-updated"]
            assert (one["roomId"], one["unreadCount"], one["roomUnreadCount"]) == (room.pk, n, n)
            assert one["totalUnreadCount"] == n
            assert one["lastMessage"]["body"] == f"m{n}"
            updated = await default.receive_type("chat-room-updated")
            total = await default.receive_type("total-unread-count-updated")
            assert "combines" not in updated
            assert (updated["unreadCount"], total["totalUnreadCount"]) == (n, n)
            assert total["version"] == updated["version"]
        await sender.request({"type": "ping"}, "pong")
        await combined.request({"type": "ping"}, "pong")
        # Nothing else came: one frame per message for the combined client.
        assert [f["type"] for f in combined.frames] == [
            "unread-state", "chat-room-updated", "chat-room-updated", "pong"
        ]  # fmt: skip
        metrics = await asyncio.to_thread(server.get_text, "/metrics")
        direct = [
            line
            for line in metrics.splitlines()
            if line.startswith('fanout_hub_deliveries_total{path="direct"}')
        ]
        if hub == "1":
            assert direct and float(direct[0].split()[-1]) > 0, direct
        else:
            assert not direct or float(direct[0].split()[-1]) == 0, direct
    finally:
        for client in clients:
            await client.close()
        server.stop()
