"""Pushes at the cost of a row: deliveries planned in bulk, claimed in batches, settled in
bulk, with a fixed number of statements per batch; and the one selector of who gets a push."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import presence
from chat.models import Level, Membership, Message
from chat.services import message_edit, message_send
from chat.tests.helpers import make_room, make_user
from notifications import delivery
from notifications.backends import PushOutcome
from notifications.models import PushDelivery
from notifications.queue import messages_job_key
from notifications.relay import BATCH_SPAN_SECONDS, MESSAGES_PER_JOB, job_batches
from notifications.selectors import PUSH, message_push_verdicts
from notifications.tests.helpers import make_device

pytestmark = pytest.mark.django_db


def _room_with_devices(
    members: int, messages: int, name: str = "general"
) -> tuple[list[int], list[Any]]:
    sender = make_user(f"{name}-sender")
    people = [make_user(f"{name}-member{n}") for n in range(members)]
    room = make_room(name, [sender, *people])
    for person in people:
        make_device(person)
    ids = [
        Message.objects.create(room=room, sender=sender, body=f"m{n}").pk for n in range(messages)
    ]
    return ids, people


def _statements(function: Any, *args: Any) -> tuple[Any, int]:
    with CaptureQueriesContext(connection) as queries:
        result = function(*args)
    return result, len(queries.captured_queries)


def test_planning_costs_the_same_statements_for_one_push_or_a_hundred() -> None:
    small, _ = _room_with_devices(members=1, messages=1, name="small")
    one, few = _statements(delivery.message_pushes, small)
    big, _ = _room_with_devices(members=10, messages=10, name="big")
    hundred, many = _statements(delivery.message_pushes, big)
    assert (len(one), len(hundred)) == (1, 100)
    assert many == few


def test_each_push_carries_its_recipients_absolute_badge_and_is_claimed_once() -> None:
    ids, people = _room_with_devices(members=3, messages=2)
    # member0 read the first message: 1 unread; the others 2.
    Membership.objects.filter(user=people[0]).update(last_read_message_id=ids[0])
    pushes = delivery.message_pushes(ids)
    assert len(pushes) == 5  # member0 is skipped for the first message (read)
    badges = {
        (p.target.device_id, p.message.payload["messageId"]): p.message.payload["badge"]
        for p in pushes
    }
    assert set(badges.values()) == {1, 2}
    claimed, statements = _statements(delivery.deliveries_claim, pushes)
    assert statements == 1  # one UPDATE ... RETURNING for the batch
    assert sorted(claimed) == sorted(p.delivery_id for p in pushes)
    assert set(claimed.values()) == {1}
    # Claimed already: a second claim (a job run twice) gets nothing.
    assert delivery.deliveries_claim(pushes) == {}
    rows = PushDelivery.objects.filter(status="sending")
    assert {(r.device_id, r.message_id): r.badge for r in rows} == badges
    [read] = PushDelivery.objects.filter(status="skipped")
    assert (read.reason, read.message_id) == ("read", ids[0])
    # A re-run of the job plans nothing: no row is pending any more.
    assert delivery.message_pushes(ids) == []


def test_a_rerun_sends_only_what_is_still_pending_and_decides_again() -> None:
    ids, people = _room_with_devices(members=3, messages=1)
    first = delivery.message_pushes(ids)
    delivery.deliveries_claim(first[:1])  # the first run was killed after claiming one
    Membership.objects.filter(user__in=people[1:2]).update(last_read_message_id=ids[0])
    again = delivery.message_pushes(ids)
    claimed_device = first[0].target.device_id
    assert claimed_device not in {p.target.device_id for p in again}
    assert len(again) == 1  # of the two left, one member has read it meanwhile
    assert PushDelivery.objects.filter(status="skipped", reason="read").count() == 1


def test_outcomes_are_recorded_with_one_statement_per_outcome() -> None:
    ids, _ = _room_with_devices(members=7, messages=1)
    pushes = delivery.message_pushes(ids)
    attempts = delivery.deliveries_claim(pushes)
    claimed = [
        delivery.ReadyPush(
            p.delivery_id, p.target, p.message, p.message_created_at, attempts[p.delivery_id]
        )
        for p in pushes
    ]
    outcomes = [
        PushOutcome("delivered"),
        PushOutcome("delivered"),
        PushOutcome("delivered"),
        PushOutcome("gone", error="410 Gone"),
        PushOutcome("failed", error="400 Bad"),
        PushOutcome("retry", error="503"),
        PushOutcome("retry", error="429", retry_after_seconds=30),
    ]
    settled, statements = _statements(
        delivery.deliveries_settle, list(zip(claimed, outcomes, strict=True))
    )
    # Five UPDATEs (sent, gone, failed, the retries, the gone device), a savepoint, its release.
    assert statements == 7, statements
    assert [s.status for s in settled] == ["sent"] * 3 + ["gone", "failed", "pending", "pending"]
    assert settled[-1].retry_at is not None and settled[-2].retry_at is not None
    rows = {r.pk: r for r in PushDelivery.objects.all()}
    by_push = [rows[p.delivery_id] for p in claimed]
    assert [r.status for r in by_push] == [s.status for s in settled]
    assert all(r.sent_at is not None for r in by_push[:3])
    assert (by_push[5].last_error, by_push[6].last_error) == ("503", "429")
    assert by_push[6].next_attempt_at is not None and by_push[5].next_attempt_at is not None
    assert by_push[6].next_attempt_at >= by_push[6].updated_at  # no sooner than Retry-After


def test_the_selector_says_who_gets_a_push_and_why_not() -> None:
    sender = make_user("sender")
    reader, viewer, muter, pushed, leaver = (
        make_user(name) for name in ("reader", "viewer", "muter", "pushed", "leaver")
    )
    room = make_room("general", [sender, reader, viewer, muter, pushed, leaver])
    message = Message.objects.create(room=room, sender=sender, body="hi")
    Membership.objects.filter(user=reader).update(last_read_message_id=message.pk)
    Membership.objects.filter(user=muter).update(level=Level.NONE)
    presence.viewing_add(room_ids=[room.pk], user_id=viewer.pk, channel_name="c1")
    Membership.objects.filter(user=leaver).delete()
    verdicts = message_push_verdicts([message.pk, message.pk + 1000])
    assert verdicts.recipients(message.pk) == {
        reader.pk: "read",
        viewer.pk: "viewing",
        muter.pk: "muted",
        pushed.pk: PUSH,
    }
    assert verdicts.reason(message.pk, leaver.pk) == "read"  # left: nothing of it to read
    assert verdicts.reason(message.pk + 1000, pushed.pk) == "deleted"
    only = message_push_verdicts([message.pk], [pushed.pk])
    assert only.recipients(message.pk) == {pushed.pk: PUSH}


def test_the_relay_cuts_jobs_by_count_and_by_time_and_dues_them_at_the_newest() -> None:
    base = 1_000.0
    rows = [(n, base + n * 0.001) for n in range(MESSAGES_PER_JOB + 5)]
    rows.append((999, base + 5.0))  # much later: a job of its own
    batches = job_batches(rows)
    assert [len(ids) for ids, _ in batches] == [MESSAGES_PER_JOB, 5, 1]
    for ids, due in batches:
        created = [at for message_id, at in rows if message_id in ids]
        assert due == max(created)  # none is pushed before its own grace delay
        assert max(created) - min(created) <= BATCH_SPAN_SECONDS


def test_the_same_rows_are_the_same_job_and_a_row_written_again_by_an_edit_another() -> None:
    assert messages_job_key([5, 6], 100.0) == messages_job_key([5, 6], 100.0)
    assert messages_job_key([5], 100.0) != messages_job_key([5, 6], 100.0)
    # The message's own job may be running when the edit's row is relayed: refused, the edit's
    # mention would never be planned.
    assert messages_job_key([5], 100.0) != messages_job_key([5], 101.5)


def test_an_edit_pushes_only_the_mentions_it_added_to_members_at_level_mentions() -> None:
    alice, bob, carol, erin, dave = (
        make_user(name) for name in ("alice", "bob", "carol", "erin", "dave")
    )
    room = make_room("general", [alice, bob, carol, erin, dave])
    for user in (carol, erin, dave):
        Membership.objects.filter(user=user).update(level=Level.MENTIONS)
    phones = {user.username: make_device(user) for user in (bob, carol, erin, dave)}
    sent = message_send(sender_id=alice.pk, room_id=room.pk, body="hi @erin", client_message_id="c")
    message_id = sent.message.pk

    def plan_and_send() -> dict[int, bool]:
        """Plan the message's pushes, call them sent: {device: its "mention"}."""
        pushes = delivery.message_pushes([message_id])
        PushDelivery.objects.filter(status="pending").update(status="sent")
        return {p.target.device_id: p.message.payload["mention"] for p in pushes}

    assert plan_and_send() == {phones["bob"].pk: False, phones["erin"].pk: True}
    # Since: new devices for everyone; dave read the message.
    laptops = {user.username: make_device(user, 2) for user in (bob, carol, erin, dave)}
    Membership.objects.filter(user=dave).update(last_read_message_id=message_id)
    message_edit(
        user_id=alice.pk, room_id=room.pk, message_id=message_id, body="hi @erin @carol @bob @dave"
    )
    edited = plan_and_send()
    # carol: her row skipped as unmention reopens, her new device gets a row. erin was pushed
    # already, bob is at level all: neither gets the message again, not even on a new device.
    # dave read it.
    assert edited == {phones["carol"].pk: True, laptops["carol"].pk: True}
    rows = {(d.device_id, d.status, d.reason) for d in PushDelivery.objects.all()}
    assert (phones["dave"].pk, "skipped", "unmention") in rows
    assert not {laptops[name].pk for name in ("bob", "erin", "dave")} & {d for d, _, _ in rows}
    # Mentioned, unmentioned, mentioned again: carol is not pushed twice.
    for body in ("hi", "hi @carol"):
        message_edit(user_id=alice.pk, room_id=room.pk, message_id=message_id, body=body)
        assert plan_and_send() == {}


def test_an_edit_before_the_first_plan_is_planned_like_a_new_message() -> None:
    alice, carol = make_user("alice"), make_user("carol")
    room = make_room("general", [alice, carol])
    Membership.objects.filter(user=carol).update(level=Level.MENTIONS)
    phone = make_device(carol)
    sent = message_send(sender_id=alice.pk, room_id=room.pk, body="hi", client_message_id="c")
    message_edit(user_id=alice.pk, room_id=room.pk, message_id=sent.message.pk, body="hi @Carol")
    [push] = delivery.message_pushes([sent.message.pk])
    assert (push.target.device_id, push.message.payload["mention"]) == (phone.pk, True)
