"""Repairs after crashes, and the counters staff watch."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from chat.models import Message
from chat.tests.helpers import make_room, make_user
from notifications import delivery
from notifications.models import PushDelivery
from notifications.tests.helpers import make_device
from notifications.upkeep import deliveries_upkeep

pytestmark = pytest.mark.django_db


def test_upkeep_fails_stale_claims_and_finds_retries_whose_job_was_lost() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    phone = make_device(bob)
    long_ago = timezone.now() - timedelta(hours=1)
    messages = [Message.objects.create(room=room, sender=alice, body=str(n)) for n in range(3)]
    stale = PushDelivery.objects.create(
        message=messages[0], device=phone, status="sending", claimed_at=long_ago, attempts=1
    )
    lost_retry = PushDelivery.objects.create(
        message=messages[1], device=phone, status="pending", next_attempt_at=long_ago, attempts=2
    )
    in_flight = PushDelivery.objects.create(
        message=messages[2], device=phone, status="sending", claimed_at=timezone.now()
    )
    overdue, failed = deliveries_upkeep()
    assert overdue == [(lost_retry.pk, 2)] and failed == 1
    stale.refresh_from_db()
    assert stale.status == "failed" and "outcome unknown" in stale.last_error
    in_flight.refresh_from_db()
    assert in_flight.status == "sending"


def test_skips_are_counted_by_reason() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    make_device(bob)
    message = Message.objects.create(room=room, sender=alice, body="hi")
    room.memberships.filter(user=bob).update(last_read_message_id=message.pk)

    def skipped() -> float:
        return REGISTRY.get_sample_value("push_skipped_total", {"reason": "read"}) or 0.0

    before = skipped()
    assert delivery.message_pushes([message.pk]) == []
    assert skipped() == before + 1
    [row] = PushDelivery.objects.all()
    assert (row.status, row.reason) == ("skipped", "read")
