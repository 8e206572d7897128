"""Who gets which push, decided in the database when the push is due, and what came of it.

Synchronous ORM code; the worker's jobs call it through `sync_to_async`. Every push is a
`PushDelivery` row, created pending, checked (read meanwhile? viewing? muted?), then claimed
with one conditional UPDATE (pending -> sending) when a send slot is free, just before the
backend is called (`deliveries_claim`, batched across jobs): a job that runs twice (a sweep
after a crash, a relay that queued a message again) finds the row no longer pending and sends
nothing. So each (message, device) is pushed at most once. A worker killed mid-batch leaves
its unclaimed rows pending, and the re-run of its job sends them; only the pushes in flight at
that moment stay `sending`, and `notifications.upkeep` marks them failed ("outcome unknown")
after STALE_CLAIM_SECONDS rather than risk a second push.
"""

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from django.db import transaction
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.utils import timezone
from redis.exceptions import RedisError

from chat import presence
from chat.models import Membership, Message
from chat.unread import unread_counts
from notifications import metrics
from notifications.app_settings import app_settings
from notifications.backends import PushMessage, PushOutcome, PushTarget
from notifications.events import BadgePush, ChatMessagePush
from notifications.models import Device, PushDelivery, RoomMute

logger = logging.getLogger(__name__)

Status = PushDelivery.Status
Reason = PushDelivery.Reason

MESSAGE_TTL_SECONDS = 24 * 3600
BADGE_TTL_SECONDS = 24 * 3600
BODY_PREVIEW = 200


@dataclass(frozen=True)
class ReadyPush:
    """A checked delivery, ready for its backend once claimed (`attempt` is then set)."""

    delivery_id: int
    target: PushTarget
    message: PushMessage
    message_created_at: float | None  # epoch seconds, for the latency histogram
    attempt: int = 0


class _Pending(NamedTuple):
    """A pending delivery and its device, read as plain values: the hot path builds no ORM
    objects per push."""

    pk: int
    message_id: int | None
    device_id: int
    user_id: int
    active: bool
    kind: str
    address: str
    keys: Any


_PENDING_FIELDS = (
    "pk",
    "message_id",
    "device_id",
    "device__user_id",
    "device__active",
    "device__kind",
    "device__address",
    "device__keys",
)


@dataclass(frozen=True)
class Settled:
    """What the worker must do next for a delivery: maybe retry it at `retry_at`."""

    status: str
    retry_at: float | None = None
    attempt: int = 0


def message_deliveries(message_ids: list[int]) -> dict[int, list[ReadyPush]]:
    """The due pushes of these messages, by message: one per active device of each member who
    should get one. Batched: the same handful of queries for one message or a hundred."""
    messages = {
        m.pk: m for m in Message.objects.filter(pk__in=message_ids).select_related("room", "sender")
    }
    if not messages:
        return {}
    # Read once: who the members are, and how far each has read.
    read_upto: dict[tuple[int, int], int] = {}
    members: dict[int, list[int]] = {}
    for room_id, user_id, upto in Membership.objects.filter(
        room_id__in={m.room_id for m in messages.values()}
    ).values_list("room_id", "user_id", "last_read_message_id"):
        read_upto[room_id, user_id] = upto
        members.setdefault(room_id, []).append(user_id)
    devices: dict[int, list[int]] = {}
    users = {user for room_members in members.values() for user in room_members}
    for device_id, user_id in Device.objects.filter(user_id__in=users, active=True).values_list(
        "pk", "user_id"
    ):
        devices.setdefault(user_id, []).append(device_id)
    rows = [
        PushDelivery(kind=PushDelivery.Kind.MESSAGE, message_id=message.pk, device_id=device_id)
        for message in messages.values()
        for user_id in members.get(message.room_id, [])
        if user_id != message.sender_id
        for device_id in devices.get(user_id, [])
    ]
    if not rows:
        return {}
    PushDelivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    ready = _prepare(
        PushDelivery.objects.filter(
            kind=PushDelivery.Kind.MESSAGE, message_id__in=messages, status=Status.PENDING
        ),
        messages=messages,
        read_upto=read_upto,
    )
    by_message: dict[int, list[ReadyPush]] = {}
    for push in ready:
        by_message.setdefault(push.message.payload["messageId"], []).append(push)
    return by_message


def badge_deliveries(user_id: int, seq: int) -> list[ReadyPush]:
    """A silent badge update to every active device of the user, once per badge job."""
    devices = list(Device.objects.filter(user_id=user_id, active=True).only("pk"))
    if not devices:
        return []
    PushDelivery.objects.bulk_create(
        [PushDelivery(kind=PushDelivery.Kind.BADGE, badge_seq=seq, device=d) for d in devices],
        ignore_conflicts=True,
    )
    return _prepare(
        PushDelivery.objects.filter(
            kind=PushDelivery.Kind.BADGE,
            badge_seq=seq,
            device__user_id=user_id,
            status=Status.PENDING,
        )
    )


def retry_deliveries(delivery_id: int) -> list[ReadyPush]:
    """A delivery due for another attempt, checked again like the first time."""
    row = PushDelivery.objects.filter(pk=delivery_id, status=Status.PENDING).first()
    if row is None:
        return []
    messages = {}
    if row.kind == PushDelivery.Kind.MESSAGE:
        message = (
            Message.objects.filter(pk=row.message_id or 0).select_related("room", "sender").first()
        )
        if message is None:
            _skip([row.pk], Reason.DELETED)
            return []
        messages[message.pk] = message
    return _prepare(PushDelivery.objects.filter(pk=delivery_id, status=Status.PENDING), messages)


def _prepare(
    rows: QuerySet[PushDelivery],
    messages: dict[int, Message] | None = None,
    read_upto: dict[tuple[int, int], int] | None = None,
) -> list[ReadyPush]:
    """Check and build the pushes of these pending rows (of messages, or badge rows)."""
    pending = [_Pending(*values) for values in rows.values_list(*_PENDING_FIELDS)]
    if not pending:
        return []
    inactive = [row.pk for row in pending if not row.active]
    _skip(inactive, Reason.INACTIVE)
    pending = [row for row in pending if row.active]
    if messages:
        pending = _without_skipped(pending, messages, read_upto)
    if not pending:
        return []
    # Read before anything is claimed: if Redis is down this raises and the job is retried.
    badges = {
        user_id: unread_counts().counts(user_id, []).total
        for user_id in {row.user_id for row in pending}
    }
    ready = []
    for row in pending:
        badge = badges[row.user_id]
        message = messages.get(row.message_id or 0) if messages else None
        ready.append(
            ReadyPush(
                delivery_id=row.pk,
                target=PushTarget(
                    device_id=row.device_id,
                    kind=row.kind,
                    address=row.address,
                    keys=dict(row.keys or {}),
                ),
                message=_chat_push(message, badge) if message else _badge_push(badge),
                message_created_at=message.created_at.timestamp() if message else None,
            )
        )
    return ready


def _without_skipped(
    pending: list[_Pending],
    messages: dict[int, Message],
    read_upto: dict[tuple[int, int], int] | None,
) -> list[_Pending]:
    """Drop (and record) the deliveries whose user read the message, views the room or muted it."""
    rooms = {message.room_id for message in messages.values()}
    users = {row.user_id for row in pending}
    if read_upto is None:
        read_upto = {
            (room_id, user_id): upto
            for room_id, user_id, upto in Membership.objects.filter(
                room_id__in=rooms, user_id__in=users
            ).values_list("room_id", "user_id", "last_read_message_id")
        }
    muted = set(
        RoomMute.objects.filter(room_id__in=rooms, user_id__in=users).values_list(
            "room_id", "user_id"
        )
    )
    viewing = {room_id: _viewers(room_id) for room_id in rooms}
    reasons: dict[str, list[int]] = {}
    reason: str
    kept = []
    for row in pending:
        message = messages[row.message_id or 0]
        user = (message.room_id, row.user_id)
        if user not in read_upto:
            reason = Reason.READ  # left the room: nothing of it is theirs to read any more
        elif row.user_id in viewing[message.room_id]:
            reason = Reason.VIEWING
        elif read_upto[user] >= message.pk:
            reason = Reason.READ
        elif user in muted:
            reason = Reason.MUTED
        else:
            kept.append(row)
            continue
        reasons.setdefault(reason, []).append(row.pk)
    for reason, ids in reasons.items():
        _skip(ids, reason)
    return kept


def _viewers(room_id: int) -> set[int]:
    try:
        return presence.viewer_ids(room_id)
    except RedisError:
        return set()  # unknown: the read pointer still catches whoever viewed at save time


def _skip(ids: list[int], reason: str) -> None:
    if not ids:
        return
    skipped = PushDelivery.objects.filter(pk__in=ids, status=Status.PENDING).update(
        status=Status.SKIPPED, reason=reason, updated_at=timezone.now()
    )
    metrics.PUSH_SKIPPED.labels(reason).inc(skipped)


def deliveries_claim(pushes: list[ReadyPush]) -> list[int | None]:
    """Claim these pending deliveries for this run, recording the badge each will carry: the
    attempt number of each push claimed, None where another run (or an earlier entry of this
    list) has it. The UPDATE is the atomic step; the token tells this run's rows from those
    another run claimed at the same moment."""
    token = uuid.uuid4().hex
    now = timezone.now()
    ids_of_badge: dict[int, list[int]] = {}
    for push in pushes:
        ids_of_badge.setdefault(push.message.payload["badge"], []).append(push.delivery_id)
    badge = Case(
        *[When(pk__in=ids, then=Value(count)) for count, ids in ids_of_badge.items()],
        output_field=IntegerField(),
    )
    ids = [push.delivery_id for push in pushes]
    PushDelivery.objects.filter(pk__in=ids, status=Status.PENDING).update(
        status=Status.SENDING,
        attempts=F("attempts") + 1,
        claimed_at=now,
        updated_at=now,
        claim_token=token,
        badge=badge,
    )
    attempts = dict(
        PushDelivery.objects.filter(pk__in=ids, claim_token=token).values_list("pk", "attempts")
    )
    # A delivery asked for twice in one batch (a job running twice) is sent by the first only.
    return [attempts.pop(push.delivery_id, None) for push in pushes]


def _chat_push(message: Message, badge: int) -> PushMessage:
    sender = getattr(message.sender, "get_username", lambda: str(message.sender_id))()
    payload: ChatMessagePush = {
        "type": "chat-message",
        "roomId": message.room_id,
        "messageId": message.pk,
        "title": f"{sender} in {message.room.name}",
        "body": message.body[:BODY_PREVIEW],
        "badge": badge,
    }
    return PushMessage(
        payload=dict(payload),
        urgency="high",
        ttl_seconds=MESSAGE_TTL_SECONDS,
        topic=None,  # every message is its own notification
    )


def _badge_push(badge: int) -> PushMessage:
    payload: BadgePush = {"type": "badge", "badge": badge}
    return PushMessage(
        payload=dict(payload),
        silent=True,
        urgency="low",
        ttl_seconds=BADGE_TTL_SECONDS,
        topic="badge",  # the newest badge replaces an older one still waiting in the service
    )


def deliveries_settle(results: list[tuple[ReadyPush, PushOutcome]]) -> list[Settled]:
    """Record the services' answers, in a few statements for many pushes; each `retry` answer
    comes back with when to try again."""
    now = timezone.now()
    settled: list[Settled] = []
    # (status, last_error) -> delivery ids: one UPDATE for each.
    final: dict[tuple[str, str], list[int]] = {}
    gone_devices: list[int] = []
    for push, outcome in results:
        kind = push.target.kind
        error = outcome.error[:2000]
        if outcome.status == "delivered":
            final.setdefault((Status.SENT, ""), []).append(push.delivery_id)
            metrics.PUSH_SENT.labels(kind).inc()
            if push.message_created_at is not None:
                metrics.PUSH_LATENCY.observe(max(0.0, now.timestamp() - push.message_created_at))
            settled.append(Settled(Status.SENT))
        elif outcome.status == "gone":
            final.setdefault((Status.GONE, error), []).append(push.delivery_id)
            gone_devices.append(push.target.device_id)
            metrics.PUSH_GONE.labels(kind).inc()
            settled.append(Settled(Status.GONE))
        elif outcome.status == "retry" and push.attempt < app_settings.MAX_ATTEMPTS:
            delay = retry_delay(push.attempt, outcome.retry_after_seconds)
            PushDelivery.objects.filter(pk=push.delivery_id, status=Status.SENDING).update(
                status=Status.PENDING,
                updated_at=now,
                next_attempt_at=now + timedelta(seconds=delay),
                last_error=error,
            )
            metrics.PUSH_RETRIED.labels(kind).inc()
            settled.append(
                Settled(Status.PENDING, retry_at=now.timestamp() + delay, attempt=push.attempt)
            )
        else:
            if outcome.status == "retry":
                error = f"gave up after {push.attempt} attempts: {error}"
            final.setdefault((Status.FAILED, error), []).append(push.delivery_id)
            metrics.PUSH_FAILED.labels(kind).inc()
            settled.append(Settled(Status.FAILED))
    with transaction.atomic():
        for (status, error), ids in final.items():
            PushDelivery.objects.filter(pk__in=ids, status=Status.SENDING).update(
                status=status,
                updated_at=now,
                last_error=error,
                **({"sent_at": now} if status == Status.SENT else {}),
            )
        if gone_devices:
            Device.objects.filter(pk__in=gone_devices, active=True).update(
                active=False, deactivated_at=now
            )
    return settled


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter, never sooner than the service asked (Retry-After)."""
    backoff = min(
        app_settings.RETRY_MAX_SECONDS, app_settings.RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    )
    jittered = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - spreading load, not a secret
    return max(jittered, retry_after or 0.0)
