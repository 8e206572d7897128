"""The deliveries of pushes: planned in bulk when due, claimed in batches, settled in bulk.

Synchronous ORM code; the worker's jobs call it on their database threads. Every push is a
`PushDelivery` row. A job for a batch of messages creates the rows of all their recipients'
active devices in one bulk INSERT (pending), asks `notifications.selectors` who gets a push
(the one place those rules live), marks the others skipped (one UPDATE per reason) and reads
every recipient's badge in one Redis pipeline (`plan`).

The pushes are then claimed in batches, when send slots are free, with one
`UPDATE ... RETURNING` per batch (pending -> sending, `deliveries_claim`), just before their
backend is called: a job that runs twice (a sweep after a crash, a relay that queued the same
messages again) finds the rows no longer pending and sends nothing. So each (message, device)
is pushed at most once. A worker killed mid-job leaves its unclaimed rows pending, and the
re-run of its job sends them; only the pushes claimed and in flight at that moment stay
`sending`, and `notifications.upkeep` marks them failed ("outcome unknown") after
STALE_CLAIM_SECONDS rather than risk a second push. Answers are recorded in bulk too: one
UPDATE per outcome class (`deliveries_settle`).

The hot path builds no ORM object per push: rows are read as plain values, and the targets
and payloads shared by many pushes are built once.

Edits. An edit that mentions a member at level `mentions` who had not been mentioned owes them
the push a new message's mention would have made (shared/PROTOCOL.md, "Edit"): the receiver
writes the message's outbox row again and the message's job runs again, through the same
planning, claiming and exactly-once rows. A message planned before keeps every decision made
then; the job only revisits a member whom the selector lets an edit push (`edit_may_push`:
level `mentions`, to be pushed now, so unread, not viewing, mentioned) and all of whose rows
were skipped as `unmention` (or who has none, having had no device then): those rows go back to
pending, their devices without a row get one, and they are sent like any pending row. A member
pushed before (a mention removed and added back, a new device since) is not pushed again; nor
is one skipped then as read, viewing or muted, whatever changed since; nor one at level `all`,
whose push was decided when the message was new. Edited messages cost one more query per job
(their existing rows); others none.
"""

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from django.db import transaction
from django.db.models import Case, DateTimeField, QuerySet, Value, When
from django.utils import timezone

from chat.unread import unread_counts
from notifications import metrics, rows
from notifications.app_settings import app_settings
from notifications.backends import PushMessage, PushOutcome, PushTarget
from notifications.events import BadgePush, ChatMessagePush
from notifications.models import Device, PushDelivery
from notifications.selectors import (
    PUSH,
    MessagePushVerdicts,
    PushableMessage,
    message_push_verdicts,
)

logger = logging.getLogger(__name__)

Status = PushDelivery.Status
Reason = PushDelivery.Reason

MESSAGE_TTL_SECONDS = 24 * 3600
BADGE_TTL_SECONDS = 24 * 3600
BODY_PREVIEW = 200


@dataclass(frozen=True, slots=True)
class ReadyPush:
    """A checked delivery, ready for its backend once claimed (`attempt` is then set)."""

    delivery_id: int
    target: PushTarget
    message: PushMessage
    message_created_at: float | None  # epoch seconds, for the latency histogram
    attempt: int = 0


class _Device(NamedTuple):
    pk: int
    user_id: int
    kind: str
    address: str
    keys: Any


class _Pending(NamedTuple):
    """A pending delivery and its (active) device, as plain values."""

    pk: int
    message_id: int | None
    device_id: int
    user_id: int
    kind: str
    address: str
    keys: Any


_PENDING_FIELDS = (
    "pk",
    "message_id",
    "device_id",
    "device__user_id",
    "device__kind",
    "device__address",
    "device__keys",
    "device__active",
)


@dataclass(frozen=True)
class Settled:
    """What the worker must do next for a delivery: maybe retry it at `retry_at`."""

    status: str
    retry_at: float | None = None
    attempt: int = 0


def message_pushes(message_ids: list[int]) -> list[ReadyPush]:
    """The due pushes of these messages: one per active device of each recipient the selector
    says gets one; a skipped delivery (with its reason) for each of the others. The same
    handful of statements for one message or a hundred, for one recipient or a thousand.

    A message planned before and edited since is planned again only for what its edit may
    have added (module docstring, "Edits")."""
    verdicts = message_push_verdicts(message_ids)
    decided = _decided_before(verdicts)
    recipients = {user for m in verdicts.messages for user in verdicts.recipients(m)}
    devices: dict[int, list[_Device]] = {}
    for device in Device.objects.filter(user_id__in=recipients, active=True).values_list(
        "pk", "user_id", "kind", "address", "keys"
    ):
        devices.setdefault(device[1], []).append(_Device(*device))
    planned: list[tuple[int, int, str, str]] = []
    reopened: list[int] = []
    for message_id in verdicts.messages:
        before = decided.get(message_id)
        for user_id, reason in verdicts.recipients(message_id).items():
            if before is None:
                planned += [
                    (message_id, device.pk, Status.SKIPPED if reason else Status.PENDING, reason)
                    for device in devices.get(user_id, ())
                ]
                continue
            theirs = before.get(user_id, [])
            if not verdicts.edit_may_push(message_id, user_id) or any(
                (status, why) != (Status.SKIPPED, Reason.NOT_MENTIONED)
                for _, _, status, why in theirs
            ):
                continue  # pushed, being pushed, or decided otherwise: theirs is settled
            reopened += [pk for pk, *_ in theirs]
            have = {device_id for _, device_id, _, _ in theirs}
            planned += [
                (message_id, device.pk, Status.PENDING, PUSH)
                for device in devices.get(user_id, ())
                if device.pk not in have
            ]
    if reopened:
        PushDelivery.objects.filter(
            pk__in=reopened, status=Status.SKIPPED, reason=Reason.NOT_MENTIONED
        ).update(status=Status.PENDING, reason=PUSH, updated_at=timezone.now())
    if not planned and not decided:
        return []
    created = rows.message_deliveries_insert(planned, timezone.now())
    skipped: dict[str, int] = {}
    for *_, status, reason in created:
        if status == Status.SKIPPED:
            skipped[reason] = skipped.get(reason, 0) + 1
    for reason, count in skipped.items():
        metrics.PUSH_SKIPPED.labels(reason).inc(count)
    if decided or len(created) < len(planned):
        # A run before this one made some rows (a job run twice, or swept after a crash, or
        # the first plan of an edited message): whichever run made them, those still pending
        # are this one's to decide and send.
        return _ready(
            PushDelivery.objects.filter(
                kind=PushDelivery.Kind.MESSAGE,
                message_id__in=list(verdicts.messages),
                status=Status.PENDING,
                next_attempt_at=None,  # a row waiting for its retry is its retry job's
            ),
            verdicts,
        )
    by_pk = {device.pk: device for user_devices in devices.values() for device in user_devices}
    return _build(
        [
            _Pending(pk, message_id, device_id, *by_pk[device_id][1:])
            for pk, message_id, device_id, status, _ in created
            if status == Status.PENDING
        ],
        verdicts,
    )


def _decided_before(
    verdicts: MessagePushVerdicts,
) -> dict[int, dict[int, list[tuple[int, int, str, str]]]]:
    """The deliveries that edited messages of this batch have already, as {message: {user:
    [(delivery, device, status, reason)]}}; only messages that have some. No query for a batch
    without an edited message: the common case costs nothing."""
    edited = [m.pk for m in verdicts.messages.values() if m.edited_at is not None]
    if not edited:
        return {}
    decided: dict[int, dict[int, list[tuple[int, int, str, str]]]] = {}
    for pk, message_id, device_id, user_id, status, reason in PushDelivery.objects.filter(
        kind=PushDelivery.Kind.MESSAGE, message_id__in=edited
    ).values_list("pk", "message_id", "device_id", "device__user_id", "status", "reason"):
        decided.setdefault(message_id, {}).setdefault(user_id, []).append(
            (pk, device_id, status, reason)
        )
    return decided


def badge_pushes(user_id: int, seq: int) -> list[ReadyPush]:
    """A silent badge update to every active device of the user, once per badge job."""
    devices = list(Device.objects.filter(user_id=user_id, active=True).values_list("pk", flat=True))
    if not devices:
        return []
    PushDelivery.objects.bulk_create(
        [PushDelivery(kind=PushDelivery.Kind.BADGE, badge_seq=seq, device_id=d) for d in devices],
        ignore_conflicts=True,
    )
    return _ready(
        PushDelivery.objects.filter(
            kind=PushDelivery.Kind.BADGE,
            badge_seq=seq,
            device__user_id=user_id,
            status=Status.PENDING,
        )
    )


def retry_pushes(delivery_id: int) -> list[ReadyPush]:
    """A delivery due for another attempt, decided again like the first time."""
    row = (
        PushDelivery.objects.filter(pk=delivery_id, status=Status.PENDING)
        .values_list("kind", "message_id", "device__user_id")
        .first()
    )
    if row is None:
        return []
    kind, message_id, user_id = row
    pending = PushDelivery.objects.filter(pk=delivery_id, status=Status.PENDING)
    if kind == PushDelivery.Kind.MESSAGE:
        return _ready(pending, message_push_verdicts([message_id or 0], [user_id]))
    return _ready(pending)


def _ready(
    pending_rows: QuerySet[PushDelivery], verdicts: MessagePushVerdicts | None = None
) -> list[ReadyPush]:
    """Decide again and build the pushes of these pending rows (of messages, or badge rows)."""
    skips: dict[str, list[int]] = {}
    kept: list[_Pending] = []
    for *values, active in pending_rows.values_list(*_PENDING_FIELDS):
        row = _Pending(*values)
        if not active:
            reason: str = Reason.INACTIVE
        elif verdicts is not None:
            reason = verdicts.reason(row.message_id or 0, row.user_id)
        else:
            reason = PUSH
        if reason == PUSH:
            kept.append(row)
        else:
            skips.setdefault(reason, []).append(row.pk)
    for reason, ids in skips.items():
        _skip(ids, reason)
    return _build(kept, verdicts)


def _build(kept: list[_Pending], verdicts: MessagePushVerdicts | None) -> list[ReadyPush]:
    if not kept:
        return []
    # Read before anything is claimed: one pipeline for every recipient.
    badges = unread_counts().totals(list({row.user_id for row in kept}))
    targets: dict[int, PushTarget] = {}
    payloads: dict[tuple[int, int, bool], PushMessage] = {}
    ready = []
    for row in kept:
        target = targets.get(row.device_id)
        if target is None:
            target = targets[row.device_id] = PushTarget(
                device_id=row.device_id, kind=row.kind, address=row.address, keys=row.keys or {}
            )
        badge = badges[row.user_id]
        message: PushableMessage | None = None
        mention = False
        if verdicts is not None:
            message = verdicts.messages[row.message_id or 0]
            # A set lookup in what the selector read anyway: no query per push.
            mention = verdicts.mentions(message.pk, row.user_id)
        key = (message.pk if message is not None else 0, badge, mention)
        payload = payloads.get(key)
        if payload is None:
            payload = payloads[key] = (
                _chat_push(message, badge, mention) if message is not None else _badge_push(badge)
            )
        ready.append(
            ReadyPush(
                delivery_id=row.pk,
                target=target,
                message=payload,
                message_created_at=message.created_at.timestamp() if message else None,
            )
        )
    return ready


def _skip(ids: list[int], reason: str) -> None:
    skipped = PushDelivery.objects.filter(pk__in=ids, status=Status.PENDING).update(
        status=Status.SKIPPED, reason=reason, updated_at=timezone.now()
    )
    metrics.PUSH_SKIPPED.labels(reason).inc(skipped)


def deliveries_claim(pushes: list[ReadyPush]) -> dict[int, int]:
    """Claim these pending deliveries for this run, recording the badge each will carry, in one
    statement: {delivery id: its attempt number} of those claimed. A delivery missing from the
    answer is another run's (or was settled meanwhile): not to send."""
    return rows.deliveries_claim(
        [(push.delivery_id, push.message.payload["badge"]) for push in pushes],
        uuid.uuid4().hex,  # the run that claimed, for the admin
        timezone.now(),
    )


def _chat_push(message: PushableMessage, badge: int, mention: bool) -> PushMessage:
    payload: ChatMessagePush = {
        "type": "chat-message",
        "roomId": message.room_id,
        "messageId": message.pk,
        "title": f"{message.sender_name} in {message.room_name}",
        "body": message.body[:BODY_PREVIEW],
        "badge": badge,
        "mention": mention,
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
    """Record the services' answers, one UPDATE per outcome class however many pushes; each
    `retry` answer comes back with when to try again."""
    now = timezone.now()
    settled: list[Settled] = []
    # (status, last_error) -> delivery ids: one UPDATE for each.
    final: dict[tuple[str, str], list[int]] = {}
    retries: list[tuple[int, str, float]] = []  # (delivery id, error, delay)
    gone_devices: list[int] = []
    sent: dict[str, int] = {}  # per device kind, counted once per batch
    latency = metrics.PUSH_LATENCY
    now_seconds = now.timestamp()
    for push, outcome in results:
        kind = push.target.kind
        if outcome.status == "delivered":
            final.setdefault((Status.SENT, ""), []).append(push.delivery_id)
            sent[kind] = sent.get(kind, 0) + 1
            if push.message_created_at is not None:
                latency.observe(max(0.0, now_seconds - push.message_created_at))
            settled.append(Settled(Status.SENT))
            continue
        error = outcome.error[:2000]
        if outcome.status == "gone":
            final.setdefault((Status.GONE, error), []).append(push.delivery_id)
            gone_devices.append(push.target.device_id)
            metrics.PUSH_GONE.labels(kind).inc()
            settled.append(Settled(Status.GONE))
        elif outcome.status == "retry" and push.attempt < app_settings.MAX_ATTEMPTS:
            delay = retry_delay(push.attempt, outcome.retry_after_seconds)
            retries.append((push.delivery_id, error, delay))
            metrics.PUSH_RETRIED.labels(kind).inc()
            settled.append(Settled(Status.PENDING, now_seconds + delay, push.attempt))
        else:
            if outcome.status == "retry":
                error = f"gave up after {push.attempt} attempts: {error}"
            final.setdefault((Status.FAILED, error), []).append(push.delivery_id)
            metrics.PUSH_FAILED.labels(kind).inc()
            settled.append(Settled(Status.FAILED))
    for kind, count in sent.items():
        metrics.PUSH_SENT.labels(kind).inc(count)
    with transaction.atomic():
        for (status, error), ids in final.items():
            rows.deliveries_finish(
                ids, status=status, error=error, now=now, sent=status == Status.SENT
            )
        if retries:
            _back_to_pending(retries, now)
        if gone_devices:
            Device.objects.filter(pk__in=gone_devices, active=True).update(
                active=False, deactivated_at=now
            )
    return settled


def _back_to_pending(retries: list[tuple[int, str, float]], now: Any) -> None:
    """Retried deliveries, each with its own time and error: one UPDATE for them all."""
    ids = [delivery_id for delivery_id, _, _ in retries]
    PushDelivery.objects.filter(pk__in=ids, status=Status.SENDING).update(
        status=Status.PENDING,
        updated_at=now,
        next_attempt_at=Case(
            *[
                When(pk=delivery_id, then=Value(now + timedelta(seconds=delay)))
                for delivery_id, _, delay in retries
            ],
            output_field=DateTimeField(),
        ),
        last_error=Case(*[When(pk=pk, then=Value(error)) for pk, error, _ in retries]),
    )


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter, never sooner than the service asked (Retry-After)."""
    backoff = min(
        app_settings.RETRY_MAX_SECONDS, app_settings.RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    )
    jittered = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - spreading load, not a secret
    return max(jittered, retry_after or 0.0)
