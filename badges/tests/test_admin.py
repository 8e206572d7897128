"""The staff admin's unread counts: every page loads, drift shows, the actions repair and
move live badges, and a page's counts cost the same few queries whatever its size."""

from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from badges import counters
from badges.drift import compare_counts
from chat.events import CLOSE_REVOKED
from chat.models import Membership, Message, Room
from chat.tests.helpers import (
    PATIENCE_S,
    close_quietly,
    connect_user,
    make_room,
    make_user,
    token_for,
)
from chat.tests.test_revocation import close_code
from chat.unread import room_badge
from chatproject import lanes
from chatproject.redis_client import redis_connection
from notifications.models import Device, PushDelivery, RoomMute

pytestmark = pytest.mark.django_db(transaction=True)


def staff_client() -> HttpClient:
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = HttpClient()
    client.force_login(root)
    return client


def room_with_unread(name: str, members: list[Any], count: int) -> Room:
    """A room where every member but the first has `count` unread messages, counted: the
    receivers' lanes are drained, so no badge frame of these messages is still on its way."""
    room = make_room(name, members)
    for number in range(count):
        Message.objects.create(room=room, sender=members[0], body=f"{name} {number}")
    assert lanes.flush(PATIENCE_S), "receiver lanes did not drain"
    return room


def tamper(user_id: int, room_id: int, *, extra_ids: list[int]) -> None:
    """Make Redis lie: count ids the database does not have as unread."""
    room_badge(user_id, room_id)  # loaded first, so Redis holds the user
    redis = redis_connection()
    redis.zadd(counters._room_keys(user_id, room_id)[0], {str(i): i for i in extra_ids})
    redis.hincrby(counters._user_key(user_id), "total", len(extra_ids))


def test_every_registered_models_pages_load_for_a_superuser() -> None:
    client = staff_client()
    alice, bob = make_user("alice"), make_user("bob")
    room = room_with_unread("general", [alice, bob], 2)
    token_for(alice)
    phone = Device.objects.create(user=alice, kind="apns", address="ab" * 32)
    PushDelivery.objects.create(message=Message.objects.filter(room=room).first(), device=phone)
    RoomMute.objects.create(room=room, user=bob)
    from django.contrib.auth.models import Group

    Group.objects.create(name="moderators")
    checked = []
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        changelist = client.get(reverse("admin:{}_{}_changelist".format(*info)))
        assert changelist.status_code == 200, info
        if not model._meta.managed:  # no table: a page of its own (chat.SignInLock, Redis)
            checked.append(info)
            continue
        assert changelist.context["cl"].result_count >= 1, info
        obj = changelist.context["cl"].result_list[0]
        change = client.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
        assert change.status_code == 200, info
        add = client.get(reverse("admin:{}_{}_add".format(*info)))
        can_add = model_admin.has_add_permission(changelist.wsgi_request)
        assert add.status_code == (200 if can_add else 403), info
        checked.append(info)
    assert {("chat", "membership"), ("auth", "user"), ("chat", "room")} <= set(checked)
    assert room.pk


def test_drift_is_shown_and_filtered_when_redis_lies() -> None:
    client = staff_client()
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = room_with_unread("general", [alice, bob, carol], 2)
    room_badge(carol.pk, room.pk)  # carol is loaded and right
    tamper(bob.pk, room.pk, extra_ids=[10_001, 10_002, 10_003])

    page = client.get(reverse("admin:chat_membership_changelist"))
    rows = {m.user_id: m for m in page.context["cl"].result_list}
    assert page.status_code == 200
    assert rows[bob.pk]._counts.database[room.pk] == 2
    assert rows[bob.pk]._counts.redis_room(room.pk) == 5
    assert "5 ≠" in page.content.decode()

    def shown(url: str, query: str) -> set[str]:
        response = client.get(reverse(url) + query)
        assert response.status_code == 200
        return {str(obj) for obj in response.context["cl"].result_list}

    membership = Membership.objects.get(user=bob)
    assert shown("admin:chat_membership_changelist", "?counts=drifted") == {str(membership)}
    assert str(Membership.objects.get(user=carol)) in shown(
        "admin:chat_membership_changelist", "?counts=agrees"
    )
    assert shown("admin:auth_user_changelist", "?counts=drifted") == {"bob"}
    # Alice sent everything and was never read through Redis: not held, which is not drift.
    counters.forget_users([alice.pk])
    assert "alice" in shown("admin:auth_user_changelist", "?counts=missing")

    # With the filters' counts shown (Django's facets), the drift filter counts each choice.
    faceted = client.get(reverse("admin:chat_membership_changelist") + "?_facets=True")
    assert faceted.status_code == 200
    assert "drifted from the database (1)" in faceted.content.decode()

    users = client.get(reverse("admin:auth_user_changelist")).content.decode()
    assert "5 ≠" in users  # bob's total
    detail = client.get(reverse("admin:auth_user_change", args=[bob.pk])).content.decode()
    assert "unread by room" in detail.lower() and "5 ≠" in detail


@pytest.mark.parametrize("url", ["admin:chat_membership_changelist", "admin:auth_user_changelist"])
def test_a_pages_counts_cost_the_same_queries_whatever_its_size(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = staff_client()
    redis_round_trips: list[str] = []
    pipeline_execute, command_execute = redis.client.Pipeline.execute, redis.Redis.execute_command

    def counted_pipeline(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        redis_round_trips.append("pipeline")
        return pipeline_execute(pipe, *args, **kwargs)

    def counted_command(client: Any, *args: Any, **kwargs: Any) -> Any:
        redis_round_trips.append(str(args[0]))
        return command_execute(client, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted_pipeline)
    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)

    def cost_of_page() -> tuple[int, int]:
        client.get(reverse(url))  # warm: session, content types, Lua scripts loaded
        redis_round_trips.clear()
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse(url))
        assert response.status_code == 200
        return len(queries), len(redis_round_trips)

    people = [make_user(f"user{n}") for n in range(3)]
    room_with_unread("small", people, 2)
    small = cost_of_page()
    people += [make_user(f"more{n}") for n in range(12)]
    room_with_unread("large", people, 2)
    room_with_unread("other", people[5:], 1)
    assert cost_of_page() == small
    # User, the room (or group) filter's choices, two counts, the page, and one query for
    # every row's unread counts; Redis: the session (cached_db sessions, so no session query),
    # one pipeline for the counts, one for presence (viewers of the page's rooms, or PUBSUB
    # NUMSUB of the page's users).
    assert small == (6, 3)


async def test_reconcile_action_repairs_and_resyncs_open_devices() -> None:
    alice, bob = (
        await database_sync_to_async(make_user)("alice"),
        await database_sync_to_async(make_user)("bob"),
    )
    room = await database_sync_to_async(room_with_unread)("general", [alice, bob], 2)
    phone, snapshot = await connect_user(bob)
    assert snapshot["totalUnreadCount"] == 2
    try:
        await database_sync_to_async(tamper)(bob.pk, room.pk, extra_ids=[10_001])

        def reconcile() -> str:
            response = staff_client().post(
                reverse("admin:auth_user_changelist"),
                {"action": "reconcile_counts", "_selected_action": [bob.pk]},
                follow=True,
            )
            assert response.status_code == 200
            return response.content.decode()

        page = await database_sync_to_async(reconcile)()
        assert "1 had drifted" in page
        compared = await database_sync_to_async(compare_counts)([bob.pk])
        assert not compared[bob.pk].drifted
        assert compared[bob.pk].redis_total == 2
        resync = await phone.receive_type("unread-state")
        assert resync["totalUnreadCount"] == 2
        assert resync["version"] > snapshot["version"]
    finally:
        await close_quietly([phone])


async def test_mark_room_read_action_moves_badges_on_every_device() -> None:
    alice, bob = (
        await database_sync_to_async(make_user)("alice"),
        await database_sync_to_async(make_user)("bob"),
    )
    room = await database_sync_to_async(room_with_unread)("general", [alice, bob], 3)
    phone, _ = await connect_user(bob)
    laptop, _ = await connect_user(bob)
    try:

        def mark_read() -> None:
            membership = Membership.objects.get(user=bob, room=room)
            response = staff_client().post(
                reverse("admin:chat_membership_changelist"),
                {"action": "mark_room_read", "_selected_action": [membership.pk]},
            )
            assert response.status_code == 302

        await database_sync_to_async(mark_read)()
        for device in (phone, laptop):
            frame = await device.receive_type("total-unread-count-updated")
            assert (frame["totalUnreadCount"], frame["roomId"]) == (0, room.pk)
            assert frame["roomUnreadCount"] == 0
        latest = await database_sync_to_async(lambda: Message.objects.filter(room=room).last())()
        membership = await database_sync_to_async(Membership.objects.get)(user=bob, room=room)
        assert latest is not None and membership.last_read_message_id == latest.pk
    finally:
        await close_quietly([phone, laptop])


async def test_users_page_shows_who_is_connected_and_deactivation_closes_them() -> None:
    alice = await database_sync_to_async(make_user)("alice")
    room = await database_sync_to_async(make_room)("general", [alice])
    phone, _ = await connect_user(alice)
    try:
        await phone.request({"type": "join-room", "roomId": room.pk}, "joined-room")
        client = await database_sync_to_async(staff_client)()

        def rows(url: str) -> dict[int, Any]:
            response = client.get(reverse(url))
            return {
                getattr(obj, "user_id", obj.pk): obj for obj in response.context["cl"].result_list
            }

        users = await database_sync_to_async(rows)("admin:auth_user_changelist")
        assert users[alice.pk]._connected == 1
        memberships = await database_sync_to_async(rows)("admin:chat_membership_changelist")
        assert memberships[alice.pk]._viewing is True
        page = await database_sync_to_async(client.get)(reverse("admin:chat_membership_changelist"))
        assert '<td class="field-viewing_now">viewing</td>' in page.content.decode()

        response = await database_sync_to_async(client.post)(
            reverse("admin:auth_user_changelist"),
            {"action": "deactivate_users", "_selected_action": [alice.pk]},
        )
        assert response.status_code == 302
        assert await close_code(phone) == CLOSE_REVOKED
    finally:
        await close_quietly([phone])
