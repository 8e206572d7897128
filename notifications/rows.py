"""The delivery table's hot statements, each one round trip however many rows.

Raw SQL, because what the push path needs per batch is what the ORM does not give in one
statement: an INSERT that skips the rows that exist and says which it created
(`ON CONFLICT DO NOTHING RETURNING`), and an UPDATE that claims rows, each with its own badge,
and answers which it claimed (`UPDATE ... FROM ... RETURNING`). Building a thousand model
instances (`bulk_create`) or a thousand-placeholder `IN (...)` cost more CPU per push than
the rest of the worker's own work did.

On PostgreSQL the per-row values travel as a few arrays (`unnest(%s::bigint[], ...)`,
`= ANY(%s)`): the statement text and its parameters stay the same size whatever the batch.
Elsewhere (SQLite 3.35 and later, the tests' database) they are a `VALUES` list and an
`IN` list, in chunks under SQLite's parameter limit.
"""

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from notifications.models import PushDelivery

Status = PushDelivery.Status

# SQLite allows 32,766 parameters per statement; a chunk of rows stays well under it.
_CHUNK = 2000


def _table() -> str:
    return connection.ops.quote_name(PushDelivery._meta.db_table)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def message_deliveries_insert(
    rows: Sequence[tuple[int, int, str, str]], now: datetime
) -> list[tuple[int, int, int, str, str]]:
    """Create message deliveries from (message id, device id, status, reason) rows, skipping
    any (message, device) that has one already; the created ones as (id, message id, device
    id, status, reason)."""
    if not rows:
        return []
    columns = (
        "kind, message_id, device_id, status, reason, attempts, last_error, claim_token, "
        "created_at, updated_at"
    )
    constants: list[Any] = [PushDelivery.Kind.MESSAGE, 0, "", "", now, now]
    returning = "RETURNING id, message_id, device_id, status, reason"
    created: list[tuple[int, int, int, str, str]] = []
    with connection.cursor() as cursor:
        if _postgres():
            cursor.execute(
                f"INSERT INTO {_table()} ({columns}) "
                "SELECT %s, r.message_id, r.device_id, r.status, r.reason, %s, %s, %s, %s, %s "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[]) "
                "AS r(message_id, device_id, status, reason) "
                f"ON CONFLICT DO NOTHING {returning}",
                [*constants, *(list(column) for column in zip(*rows, strict=True))],
            )
            created += cursor.fetchall()
            return created
        for chunk in _chunks(rows):
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            params: list[Any] = []
            for message_id, device_id, status, reason in chunk:
                params += (constants[0], message_id, device_id, status, reason, *constants[1:])
            cursor.execute(
                f"INSERT INTO {_table()} ({columns}) VALUES {values} "
                f"ON CONFLICT DO NOTHING {returning}",
                params,
            )
            created += cursor.fetchall()
    return created


def deliveries_claim(
    ids_and_badges: Sequence[tuple[int, int]], token: str, now: datetime
) -> dict[int, int]:
    """Claim the pending ones of these deliveries (pending -> sending), each with the badge it
    will carry: {delivery id: attempt number} of those claimed."""
    if not ids_and_badges:
        return {}
    claim = (
        f"UPDATE {_table()} SET status = %s, attempts = attempts + 1, claimed_at = %s, "
        "updated_at = %s, claim_token = %s, badge = claimed.badge "
    )
    params: list[Any] = [Status.SENDING, now, now, token]
    claimed: dict[int, int] = {}
    with connection.cursor() as cursor:
        if _postgres():
            ids, badges = zip(*ids_and_badges, strict=True)
            cursor.execute(
                f"{claim} FROM unnest(%s::bigint[], %s::integer[]) AS claimed(id, badge) "
                f"WHERE {_table()}.id = claimed.id AND status = %s "
                f"RETURNING {_table()}.id, attempts",
                [*params, list(ids), list(badges), Status.PENDING],
            )
            claimed.update(cursor.fetchall())
            return claimed
        for chunk in _chunks(ids_and_badges):
            values = ", ".join(["(%s, %s)"] * len(chunk))
            flat = [value for pair in chunk for value in pair]
            # VALUES columns are column1, column2 in SQLite: renamed in a subquery.
            cursor.execute(
                f"{claim} FROM (SELECT column1 AS id, column2 AS badge FROM (VALUES {values})) "
                f"AS claimed WHERE {_table()}.id = claimed.id AND status = %s "
                "RETURNING id, attempts",
                [*params, *flat, Status.PENDING],
            )
            claimed.update(cursor.fetchall())
    return claimed


def deliveries_finish(
    ids: Sequence[int], *, status: str, error: str, now: datetime, sent: bool
) -> int:
    """Record one outcome for these claimed deliveries (sending -> `status`)."""
    assignments = "status = %s, updated_at = %s, last_error = %s"
    if sent:
        assignments += ", sent_at = %s"
    params: list[Any] = [status, now, error, *([now] if sent else [])]
    updated = 0
    with connection.cursor() as cursor:
        for condition, id_params in _id_conditions(ids):
            cursor.execute(
                f"UPDATE {_table()} SET {assignments} WHERE {condition} AND status = %s",
                [*params, *id_params, Status.SENDING],
            )
            updated += cursor.rowcount
    return updated


def _id_conditions(ids: Sequence[int]) -> Iterator[tuple[str, list[Any]]]:
    if _postgres():
        yield "id = ANY(%s)", [list(ids)]
        return
    for chunk in _chunks(ids):
        yield f"id IN ({', '.join(['%s'] * len(chunk))})", list(chunk)
