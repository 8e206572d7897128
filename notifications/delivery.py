"""Who gets which push, decided in the database when the push is due, and what came of it.

Synchronous ORM code; the worker's jobs call it through `sync_to_async`. Every push is a
`PushDelivery` row, created pending, checked (read meanwhile? viewing? muted?), then claimed
with one conditional UPDATE (pending -> sending) before the backend is called: a job that runs
twice (a sweep after a crash, a relay that queued a message again) finds the row no longer
pending and sends nothing. So each (message, device) is pushed at most once; a worker killed
between the claim and the service's answer leaves the row `sending`, and `deliveries_upkeep`
marks it failed ("outcome unknown") after STALE_CLAIM_SECONDS rather than risk a second push.
"""

import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

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
    """A claimed delivery, ready for its backend."""

    delivery_id: int
    attempt: int
    target: PushTarget
    message: PushMessage
    message_created_at: float | None  # epoch seconds, for the latency histogram


@dataclass(frozen=True)
class Settled:
    """What the worker must do next for a delivery: maybe retry it at `retry_at`."""

    status: str
    retry_at: float | None = None
    attempt: int = 0


def message_deliveries(message_id: int) -> list[ReadyPush]:
    """A message's due pushes: one per active device of each member who should get one."""
    message = Message.objects.filter(pk=message_id).select_related("room", "sender").first()
    if message is None:
        return []
    # Read once: who the recipients are, and how far each has read.
    read_upto = dict(
        Membership.objects.filter(room_id=message.room_id)
        .exclude(user_id=message.sender_id)
        .values_list("user_id", "last_read_message_id")
    )
    devices = list(Device.objects.filter(user_id__in=read_upto, active=True).only("pk"))
    if not devices:
        return []
    PushDelivery.objects.bulk_create(
        [PushDelivery(kind=PushDelivery.Kind.MESSAGE, message=message, device=d) for d in devices],
        ignore_conflicts=True,
    )
    return _prepare(
        PushDelivery.objects.filter(
            kind=PushDelivery.Kind.MESSAGE, message_id=message_id, status=Status.PENDING
        ),
        message=message,
        read_upto=read_upto,
    )


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
    message = None
    if row.kind == PushDelivery.Kind.MESSAGE:
        message = (
            Message.objects.filter(pk=row.message_id or 0).select_related("room", "sender").first()
        )
        if message is None:
            _skip([row.pk], Reason.DELETED)
            return []
    return _prepare(PushDelivery.objects.filter(pk=delivery_id, status=Status.PENDING), message)


def _prepare(
    rows: QuerySet[PushDelivery],
    message: Message | None = None,
    read_upto: dict[int, int] | None = None,
) -> list[ReadyPush]:
    pending = list(rows.select_related("device"))
    if not pending:
        return []
    inactive = [row.pk for row in pending if not row.device.active]
    _skip(inactive, Reason.INACTIVE)
    pending = [row for row in pending if row.device.active]
    if message is not None:
        pending = _without_skipped(pending, message, read_upto)
    if not pending:
        return []
    # Read before the claim: if Redis is down this raises and the job is retried, with
    # nothing claimed yet.
    badges = {
        user_id: unread_counts().counts(user_id, []).total
        for user_id in {row.device.user_id for row in pending}
    }
    claimed = _claim(pending, badges)
    ready = []
    for row in pending:
        if row.pk not in claimed:
            continue  # another run of this job took it
        badge = badges[row.device.user_id]
        ready.append(
            ReadyPush(
                delivery_id=row.pk,
                attempt=claimed[row.pk],
                target=PushTarget(
                    device_id=row.device.pk,
                    kind=row.device.kind,
                    address=row.device.address,
                    keys=dict(row.device.keys or {}),
                ),
                message=_chat_push(message, badge) if message else _badge_push(badge),
                message_created_at=message.created_at.timestamp() if message else None,
            )
        )
    return ready


def _without_skipped(
    pending: list[PushDelivery], message: Message, read_upto: dict[int, int] | None
) -> list[PushDelivery]:
    """Drop (and record) the deliveries whose user read the message, views the room or muted it."""
    users = {row.device.user_id for row in pending}
    if read_upto is None:
        read_upto = dict(
            Membership.objects.filter(room_id=message.room_id, user_id__in=users).values_list(
                "user_id", "last_read_message_id"
            )
        )
    muted = set(
        RoomMute.objects.filter(room_id=message.room_id, user_id__in=users).values_list(
            "user_id", flat=True
        )
    )
    try:
        viewing = presence.viewer_ids(message.room_id)
    except RedisError:
        viewing = set()  # unknown: the read pointer still catches whoever viewed at save time
    reasons: dict[str, list[int]] = {}
    reason: str
    kept = []
    for row in pending:
        user_id = row.device.user_id
        if user_id not in read_upto:
            reason = Reason.READ  # left the room: nothing of it is theirs to read any more
        elif user_id in viewing:
            reason = Reason.VIEWING
        elif read_upto[user_id] >= message.pk:
            reason = Reason.READ
        elif user_id in muted:
            reason = Reason.MUTED
        else:
            kept.append(row)
            continue
        reasons.setdefault(reason, []).append(row.pk)
    for reason, ids in reasons.items():
        _skip(ids, reason)
    return kept


def _skip(ids: list[int], reason: str) -> None:
    if not ids:
        return
    skipped = PushDelivery.objects.filter(pk__in=ids, status=Status.PENDING).update(
        status=Status.SKIPPED, reason=reason, updated_at=timezone.now()
    )
    metrics.PUSH_SKIPPED.labels(reason).inc(skipped)


def _claim(pending: list[PushDelivery], badges: dict[int, int]) -> dict[int, int]:
    """Claim these pending deliveries for this run, recording the badge each will carry:
    {id: attempt number} of those it got. The UPDATE is the atomic step; the token tells this
    run's rows from those another run claimed at the same moment."""
    token = uuid.uuid4().hex
    now = timezone.now()
    devices_of: dict[int, list[int]] = {}
    for row in pending:
        devices_of.setdefault(badges[row.device.user_id], []).append(row.device_id)
    badge = Case(
        *[When(device_id__in=ids, then=Value(count)) for count, ids in devices_of.items()],
        output_field=IntegerField(),
    )
    ids = [row.pk for row in pending]
    PushDelivery.objects.filter(pk__in=ids, status=Status.PENDING).update(
        status=Status.SENDING,
        attempts=F("attempts") + 1,
        claimed_at=now,
        updated_at=now,
        claim_token=token,
        badge=badge,
    )
    return dict(
        PushDelivery.objects.filter(pk__in=ids, claim_token=token).values_list("pk", "attempts")
    )


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


def delivery_settle(push: ReadyPush, outcome: PushOutcome) -> Settled:
    """Record the service's answer; a `retry` answer comes back with when to try again."""
    now = timezone.now()
    rows = PushDelivery.objects.filter(pk=push.delivery_id, status=Status.SENDING)
    error = outcome.error[:2000]
    if outcome.status == "delivered":
        rows.update(status=Status.SENT, sent_at=now, updated_at=now, last_error="")
        metrics.PUSH_SENT.labels(push.target.kind).inc()
        if push.message_created_at is not None:
            metrics.PUSH_LATENCY.observe(max(0.0, now.timestamp() - push.message_created_at))
        return Settled(Status.SENT)
    if outcome.status == "gone":
        with transaction.atomic():
            rows.update(status=Status.GONE, updated_at=now, last_error=error)
            Device.objects.filter(pk=push.target.device_id, active=True).update(
                active=False, deactivated_at=now
            )
        metrics.PUSH_GONE.labels(push.target.kind).inc()
        return Settled(Status.GONE)
    if outcome.status == "retry" and push.attempt < app_settings.MAX_ATTEMPTS:
        delay = retry_delay(push.attempt, outcome.retry_after_seconds)
        rows.update(
            status=Status.PENDING,
            updated_at=now,
            next_attempt_at=now + timedelta(seconds=delay),
            last_error=error,
        )
        metrics.PUSH_RETRIED.labels(push.target.kind).inc()
        return Settled(Status.PENDING, retry_at=now.timestamp() + delay, attempt=push.attempt)
    if outcome.status == "retry":
        error = f"gave up after {push.attempt} attempts: {error}"
    rows.update(status=Status.FAILED, updated_at=now, last_error=error)
    metrics.PUSH_FAILED.labels(push.target.kind).inc()
    return Settled(Status.FAILED)


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter, never sooner than the service asked (Retry-After)."""
    backoff = min(
        app_settings.RETRY_MAX_SECONDS, app_settings.RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    )
    jittered = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - spreading load, not a secret
    return max(jittered, retry_after or 0.0)


def deliveries_upkeep() -> tuple[list[tuple[int, int]], int]:
    """Repairs after crashes: (retries whose job may be lost, stale claims marked failed).

    A retry's job is queued after its row is settled; a worker that died in between, or Redis
    down at that moment, leaves a pending row with no job. Such rows are returned, as
    (delivery id, attempt), for the relay to queue again (a job key per attempt de-duplicates).
    """
    now = timezone.now()
    overdue = list(
        PushDelivery.objects.filter(
            status=Status.PENDING, next_attempt_at__lt=now - timedelta(seconds=30)
        ).values_list("pk", "attempts")[:500]
    )
    stale = PushDelivery.objects.filter(
        status=Status.SENDING,
        claimed_at__lt=now - timedelta(seconds=app_settings.STALE_CLAIM_SECONDS),
    ).update(
        status=Status.FAILED,
        updated_at=now,
        last_error="outcome unknown: the worker stopped while sending; not sent again",
    )
    return overdue, stale


def deliveries_prune(*, older_than_days: int, batch_size: int = 1000) -> Iterable[int]:
    """Delete finished delivery records older than the given age, a bounded batch at a time;
    yields how many each batch deleted."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    finished = [Status.SENT, Status.SKIPPED, Status.FAILED, Status.GONE]
    while True:
        ids = list(
            PushDelivery.objects.filter(created_at__lt=cutoff, status__in=finished).values_list(
                "pk", flat=True
            )[:batch_size]
        )
        if not ids:
            return
        deleted, _ = PushDelivery.objects.filter(pk__in=ids).delete()
        yield deleted
