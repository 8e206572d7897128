"""Rebuilding counts from the database: exact for every member, in a few queries for many."""

from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from badges import counters
from badges.selectors import unread_counts_from_db
from badges.services import badges_rebuild_users
from chat.models import Membership, Message
from chat.tests.helpers import make_room, make_user
from chatproject.redis_client import redis_connection

pytestmark = pytest.mark.django_db


def _messages(room: Any, senders: list[Any], count: int) -> list[int]:
    ids = []
    for n in range(count):
        sender = senders[n % len(senders)]
        message = Message.objects.create(
            room=room, sender=sender, body=str(n), client_message_id=f"{room.pk}-{n}"
        )
        ids.append(message.pk)
    return ids


def _truth(user: Any) -> dict[int, int]:
    return {room: unread for room, (_, unread) in unread_counts_from_db(user.pk).items()}


@override_settings(BADGES_MAX_TRACKED_UNREAD=4)
def test_rebuild_matches_the_database_for_every_member() -> None:
    users = [make_user(f"u{i}") for i in range(6)]
    big = make_room("big", users)
    small = make_room("small", users[:3])
    ids = _messages(big, users[:3], 9) + _messages(small, users[3:] or users, 2)
    # Different pointers: one far behind (over the cap), one halfway, one fully read.
    Membership.objects.filter(room=big, user=users[1]).update(last_read_message_id=ids[4])
    Membership.objects.filter(room=big, user=users[2]).update(last_read_message_id=ids[8])
    redis_connection().flushdb()

    states = badges_rebuild_users([u.pk for u in users], reason="test")

    for user in users:
        truth = _truth(user)
        assert states[user.pk].rooms == truth, user.username
        assert states[user.pk].total == sum(truth.values())
    assert states[users[5].pk].rooms[big.pk] == 9  # over the cap of 4: still exact
    # and the trimmed state behaves: reading all of it brings the count to zero
    badge = counters.apply_read(user_id=users[5].pk, room_id=big.pk, read_upto=ids[8], cap=4)
    assert badge.room_count == 0


@override_settings(BADGES_MAX_TRACKED_UNREAD=4)
def test_rebuild_counts_mentions_and_levels_as_the_database_has_them() -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = make_room("big", [alice, bob, carol])
    quiet = make_room("quiet", [alice, bob])
    bodies = ["@room one", "@bob two", "three", "@carol four", "five", "@bob six", "seven"]
    for n, body in enumerate(bodies):
        Message.objects.create(room=room, sender=alice, body=body, client_message_id=f"m{n}")
    Message.objects.create(room=quiet, sender=alice, body="@bob", client_message_id="q")
    Membership.objects.filter(room=quiet, user=bob).update(level="mentions")
    Membership.objects.filter(room=room, user=carol).update(level="none")
    redis_connection().flushdb()

    states = badges_rebuild_users([bob.pk, carol.pk], reason="test")

    # bob: 7 unread in big (over the cap of 4) of which 3 mention him; quiet at `mentions`
    # adds its one mention.
    assert (states[bob.pk].rooms[room.pk], states[bob.pk].mentions[room.pk]) == (7, 3)
    assert (states[bob.pk].total, states[bob.pk].total_mentions) == (8, 4)
    # carol: big at `none` adds nothing, though its counts are kept.
    assert (states[carol.pk].rooms[room.pk], states[carol.pk].mentions[room.pk]) == (7, 2)
    assert (states[carol.pk].total, states[carol.pk].total_mentions) == (0, 0)
    assert states[carol.pk].levels[room.pk] == "none"


def test_rebuilding_many_users_costs_a_fixed_number_of_queries() -> None:
    users = [make_user(f"u{i}") for i in range(30)]
    room = make_room("r", users)
    _messages(room, users[:2], 3)
    with CaptureQueriesContext(connection) as queries:
        badges_rebuild_users([u.pk for u in users], reason="test")
    assert len(queries.captured_queries) == 2  # counts for all, then the unread ids for all
