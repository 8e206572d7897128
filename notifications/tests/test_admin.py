"""The admin shows devices, deliveries (filterable) and the outbox."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.models import Level, Membership, Message
from chat.tests.helpers import make_room, make_user
from notifications.models import Device, PushDelivery
from notifications.tests.helpers import make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Client) -> Client:
    get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.login(username="root", password="pw-for-tests-1")
    return client


def _records() -> tuple[Any, Device]:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    message = Message.objects.create(room=room, sender=alice, body="hi")
    phone = make_device(bob)
    PushDelivery.objects.create(message=message, device=phone, status="failed", last_error="503")
    PushDelivery.objects.create(kind="badge", badge_seq=1, device=phone, status="sent", badge=0)
    Membership.objects.filter(room=room, user=bob).update(level=Level.NONE)  # muted
    return message, phone


@pytest.mark.parametrize(
    "model, query, shown",
    [
        ("pushdelivery", "", 2),
        ("pushdelivery", "?status__exact=failed", 1),
        ("pushdelivery", "?kind__exact=badge", 1),
        ("pushdelivery", "?q=bob", 2),
        ("device", "?active__exact=1", 1),
        ("device", "?active__exact=0", 0),
        ("pushoutbox", "", 1),
    ],
)
def test_changelists_and_change_pages_render(
    staff: Client, model: str, query: str, shown: int
) -> None:
    _records()
    page = staff.get(reverse(f"admin:notifications_{model}_changelist") + query)
    assert page.status_code == 200
    assert page.context["cl"].result_count == shown
    for obj in page.context["cl"].result_list:
        change = staff.get(reverse(f"admin:notifications_{model}_change", args=[obj.pk]))
        assert change.status_code == 200


def test_prune_deletes_finished_records_older_than_asked(capsys: pytest.CaptureFixture) -> None:
    message, phone = _records()
    old = timezone.now() - timedelta(days=40)
    PushDelivery.objects.filter(kind="message").update(created_at=old)
    PushDelivery.objects.create(
        message=Message.objects.create(room=message.room, sender=message.sender, body="x"),
        device=phone,
        status="pending",
        created_at=old,
    )
    call_command("prune_push_deliveries", "--older-than-days", "30", "--batch-size", "1")
    assert "deleted 1 push delivery records older than 30 days" in capsys.readouterr().out
    # the recent badge record and the old but unfinished delivery stay
    assert sorted(PushDelivery.objects.values_list("status", flat=True)) == ["pending", "sent"]
