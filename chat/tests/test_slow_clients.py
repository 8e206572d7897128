"""Clients that stop reading, against a real daphne over real sockets (bench/stalled.py).

Stalled clients are raw sockets with a small receive buffer that never call recv() after
joining a busy room; normal clients keep reading. The stalled ones must be closed with 4008
(they read up to the close frame afterwards), the normal ones never, and every normal client
must end up showing the database's counts.
"""

import sys
from io import StringIO
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from badges.selectors import unread_counts_for_users
from bench.stalled import Server, database_url, run_scenario, seed_roster

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def test_stalled_clients_are_closed_with_4008_and_normal_ones_stay_right(
    tmp_path: Path,
) -> None:
    roster = await database_sync_to_async(seed_roster)(stalled=4, normal=4, tag="slow")
    server = Server(
        {
            "DATABASE_URL": database_url(dict(connection.settings_dict)),
            "REDIS_URL": settings.REDIS_URL,
            "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
            # Small enough that the stalled clients are closed well within the run, large
            # enough that a normal client on a loaded machine is never mistaken for one.
            "CHAT_CONNECTION_WRITE_BUFFER_BYTES": str(128 * 1024),
            "CHAT_SLOW_CONSUMER_SECONDS": "4",
            "CHAT_CONNECTION_QUEUE_LIMIT": "1000",
            # Time for a loaded machine to get every stalled client reading again.
            "CHAT_SLOW_CONSUMER_CLOSE_GRACE_SECONDS": "60",
        },
        tmp_path / "daphne.log",
    )
    server.start()
    try:
        outcome = await run_scenario(server, roster, rate=40, seconds=16, chars=500, viewers=2)
    finally:
        server.stop()
    rss = [value for _, value in outcome.rss_mib]
    print(
        f"daphne RSS {rss[0]:.1f} -> max {max(rss):.1f} MiB; badge p99 "
        f"{outcome.badge_p99_ms():.0f} ms; closes {outcome.close_codes()}",
        file=sys.stderr,
    )

    assert outcome.stalled_close_codes == [4008] * 4, (tmp_path / "daphne.log").read_text()[-3000:]
    assert [client.close_code for client in outcome.normal] == [None] * 4
    slow = {
        k: v for k, v in outcome.metrics.items() if k.startswith("slow_consumer_disconnects_total")
    }
    assert sum(slow.values()) == 4
    # The hub wrote to the clients that kept up and queued for the stalled ones (the default
    # path, chatproject/outlet.py): both ways were taken.
    hub = {k: v for k, v in outcome.metrics.items() if k.startswith("fanout_hub_deliveries_total")}
    assert hub.get('fanout_hub_deliveries_total{path="direct"}', 0) > 0, hub
    assert hub.get('fanout_hub_deliveries_total{path="queued"}', 0) > 0, hub
    # Normal clients got every change: each shows what the database says.
    ids = [user_id for user_id, _ in roster.normal]
    truth = await database_sync_to_async(unread_counts_for_users)(ids)
    for client, user_id in zip(outcome.normal, ids, strict=True):
        counts = {room: unread for room, (_, unread) in truth[user_id].items()}
        assert client.total == sum(counts.values())
        assert client.rooms == counts
        assert client.latencies_ms, "a normal client got no badge"
    # Viewers read everything as it comes: their count stays 0; the others count every message.
    assert [client.total for client in outcome.normal] == [0, 0, outcome.sent, outcome.sent]
    # Generous: the point is that it does not grow with the stalled clients' backlog.
    assert max(rss) - rss[0] < 100

    out = StringIO()
    await database_sync_to_async(call_command)(
        "reconcile_unread_counts", "--check", "--dry-run", "--json", stdout=out
    )
    assert '"users_drifted": 0' in out.getvalue()
