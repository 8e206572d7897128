"""Reconcile: compare every user's Redis counts with the database and repair what drifted.

Bounded batches of users (ordered by id), a progress callback per batch, and a stop flag
checked between users so SIGTERM ends the run cleanly with a partial report.
"""

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.contrib.auth import get_user_model

from badges import counters
from badges.app_settings import app_settings
from badges.drift import compare_counts
from badges.services import badges_rebuild_user
from chat.events import frames_message, user_group
from chat.unread import unread_state
from chatproject import fanout
from chatproject.metrics import COUNTERS_REPAIRED


@dataclass
class ReconcileReport:
    users_checked: int = 0
    rooms_checked: int = 0
    # Users whose Redis copy was wrong, and how many of their counters were (per room its
    # unread count, mention count and level; the total and the mention total).
    users_drifted: int = 0
    counters_drifted: int = 0
    counters_repaired: int = 0
    # Users Redis did not hold at all: not drift (they rebuild on demand), loaded unless dry.
    users_missing: int = 0
    dry_run: bool = False
    stopped_early: bool = False
    drifted_user_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        report = asdict(self)
        report["drifted_user_ids"] = self.drifted_user_ids[:100]
        return report


def reconcile_unread_counts(
    *,
    user_ids: list[int] | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> ReconcileReport:
    """Check (and unless `dry_run`, repair) the counts of the given users, or of everyone."""
    batch_size = batch_size or app_settings.RECONCILE_BATCH_SIZE
    report = ReconcileReport(dry_run=dry_run)
    users = get_user_model().objects.order_by("pk")
    if user_ids is not None:
        users = users.filter(pk__in=user_ids)
    last_id = 0
    while True:
        batch = list(users.filter(pk__gt=last_id).values_list("pk", flat=True)[:batch_size])
        if not batch:
            break
        for user_id in batch:
            if stop is not None and stop.is_set():
                report.stopped_early = True
                return report
            _reconcile_user(user_id, report, dry_run=dry_run)
        last_id = batch[-1]
        if progress is not None:
            progress(len(batch))
    return report


def _reconcile_user(user_id: int, report: ReconcileReport, *, dry_run: bool) -> None:
    compared = compare_counts([user_id])[user_id]
    report.users_checked += 1
    report.rooms_checked += len(compared.rooms)
    if compared.redis is None:
        report.users_missing += 1
        if not dry_run:
            badges_rebuild_user(user_id=user_id, reason="reconcile")
        return
    wrong = compared.wrong
    if not wrong:
        return
    report.users_drifted += 1
    report.counters_drifted += wrong
    report.drifted_user_ids.append(user_id)
    if not dry_run:
        # Forget then load: a merge alone would keep ids that should not be there.
        counters.forget_users([user_id])
        badges_rebuild_user(user_id=user_id, reason="reconcile")
        report.counters_repaired += wrong
        COUNTERS_REPAIRED.inc(wrong)


def badges_resync_devices(user_ids: list[int]) -> None:
    """Send each user's open connections a fresh `unread-state` (shared/PROTOCOL.md allows one
    at any time), so repaired counts show at once rather than at the user's next change."""
    fanout.publish(
        [(user_group(user_id), frames_message(unread_state(user_id))) for user_id in user_ids]
    )
