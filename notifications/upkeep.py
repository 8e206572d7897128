"""Repairs and housekeeping of the delivery records: retries whose job was lost, claims whose
worker died, and old records. Called by the relay (upkeep) and by prune_push_deliveries."""

from collections.abc import Iterable
from datetime import timedelta

from django.utils import timezone

from notifications.app_settings import app_settings
from notifications.models import PushDelivery

Status = PushDelivery.Status


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
