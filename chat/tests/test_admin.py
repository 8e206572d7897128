from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.models import AuthToken, Membership, Message, Room
from chat.tests.helpers import make_room, make_user, token_for
from chat.unread import room_badge
from notifications.models import Device


@pytest.fixture
def admin_client_of_superuser(client: Client) -> Client:
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(superuser)
    return client


def add_form(model: str, **fields: Any) -> dict[str, Any]:
    """The add view's POST data for a model (with an empty membership inline for rooms)."""
    data = {key: value for key, value in fields.items()}
    if model == "room":
        data.update(
            {
                "memberships-TOTAL_FORMS": "0",
                "memberships-INITIAL_FORMS": "0",
                "memberships-MIN_NUM_FORMS": "0",
                "memberships-MAX_NUM_FORMS": "1000",
            }
        )
    return data


def now_fields(prefix: str = "created_at") -> dict[str, str]:
    now = timezone.now()
    return {f"{prefix}_0": now.strftime("%Y-%m-%d"), f"{prefix}_1": now.strftime("%H:%M:%S")}


@pytest.mark.django_db(transaction=True)
def test_message_added_in_the_admin_counts_as_unread_for_the_other_members(
    admin_client_of_superuser: Client,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    response = admin_client_of_superuser.post(
        reverse("admin:chat_message_add"),
        {"room": room.pk, "sender": alice.pk, "body": "from the admin", **now_fields()},
    )
    assert response.status_code == 302, response.content
    message = Message.objects.get()
    assert (message.room_id, message.sender_id, message.body) == (
        room.pk,
        alice.pk,
        "from the admin",
    )
    assert message.client_message_id is None
    # The post_save → after-commit path ran: bob's badge moved, alice's did not.
    assert room_badge(bob.pk, room.pk).room_count == 1
    assert room_badge(alice.pk, room.pk).room_count == 0
    rooms = Client().get("/api/rooms", headers={"Authorization": f"Bearer {token_for(bob)}"})
    assert rooms.json()["rooms"][0]["lastMessage"]["body"] == "from the admin"


@pytest.mark.django_db
def test_admin_refuses_a_message_from_a_non_member(admin_client_of_superuser: Client) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("secret", [bob])
    response = admin_client_of_superuser.post(
        reverse("admin:chat_message_add"),
        {"room": room.pk, "sender": alice.pk, "body": "let me in", **now_fields()},
    )
    assert response.status_code == 200  # the form again, with its error
    assert "is not a member of" in response.content.decode()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_admin_refuses_a_message_over_the_length_limit(
    admin_client_of_superuser: Client,
) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    response = admin_client_of_superuser.post(
        reverse("admin:chat_message_add"),
        {"room": room.pk, "sender": alice.pk, "body": "x" * 4001, **now_fields()},
    )
    assert response.status_code == 200
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_member_added_in_the_admin_starts_with_nothing_unread(
    admin_client_of_superuser: Client,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice])
    old = Message.objects.create(room=room, sender=alice, body="history")
    response = admin_client_of_superuser.post(
        reverse("admin:chat_membership_add"),
        {"room": room.pk, "user": bob.pk, "level": "all", **now_fields("joined_at")},
    )
    assert response.status_code == 302, response.content
    membership = Membership.objects.get(room=room, user=bob)
    assert membership.last_read_message_id == old.pk


@pytest.mark.django_db
def test_room_added_in_the_admin_with_an_inline_member(
    admin_client_of_superuser: Client,
) -> None:
    alice = make_user("alice")
    data = add_form("room", name="lobby", **now_fields())
    data.update(
        {
            "memberships-TOTAL_FORMS": "1",
            "memberships-0-user": str(alice.pk),
            **now_fields("memberships-0-joined_at"),
        }
    )
    response = admin_client_of_superuser.post(reverse("admin:chat_room_add"), data)
    assert response.status_code == 302, response.content
    room = Room.objects.get(name="lobby")
    assert list(room.memberships.values_list("user_id", "last_read_message_id")) == [(alice.pk, 0)]


@pytest.mark.django_db
def test_member_added_through_the_room_inline_starts_with_nothing_unread(
    admin_client_of_superuser: Client,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice])
    old = Message.objects.create(room=room, sender=alice, body="history")
    existing = Membership.objects.get(room=room, user=alice)
    data = add_form("room", name="general", **now_fields())
    data.update(
        {
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": str(existing.pk),
            "memberships-0-room": str(room.pk),
            "memberships-0-user": str(alice.pk),
            **now_fields("memberships-0-joined_at"),
            "memberships-1-room": str(room.pk),
            "memberships-1-user": str(bob.pk),
            **now_fields("memberships-1-joined_at"),
        }
    )
    response = admin_client_of_superuser.post(
        reverse("admin:chat_room_change", args=[room.pk]), data
    )
    assert response.status_code == 302, response.content
    pointers = dict(room.memberships.values_list("user_id", "last_read_message_id"))
    # Alice's pointer stays where it was; bob's starts past the history.
    assert pointers == {alice.pk: existing.last_read_message_id, bob.pk: old.pk}


@pytest.mark.django_db
def test_revoke_action_revokes_only_live_tokens(admin_client_of_superuser: Client) -> None:
    alice = make_user("alice")
    live = token_for(alice)
    old = AuthToken.objects.get()
    earlier = timezone.now() - timedelta(days=1)
    old.revoked_at = earlier
    old.save()
    token_for(alice)
    response = admin_client_of_superuser.post(
        reverse("admin:chat_authtoken_changelist"),
        {
            "action": "revoke_tokens",
            "_selected_action": list(AuthToken.objects.values_list("pk", flat=True)),
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 token(s)." in response.content.decode()
    assert AuthToken.objects.filter(revoked_at__isnull=True).count() == 0
    assert AuthToken.objects.get(pk=old.pk).revoked_at == earlier  # not moved
    rooms = Client().get("/api/rooms", headers={"Authorization": f"Bearer {live}"})
    assert rooms.status_code == 401


@pytest.mark.django_db
def test_tokens_cannot_be_added_and_their_hash_is_read_only(
    admin_client_of_superuser: Client,
) -> None:
    token_for(make_user("alice"))
    token = AuthToken.objects.get()
    assert admin_client_of_superuser.get(reverse("admin:chat_authtoken_add")).status_code == 403
    page = admin_client_of_superuser.get(reverse("admin:chat_authtoken_change", args=[token.pk]))
    assert page.status_code == 200
    assert 'name="key_hash"' not in page.content.decode()
    assert token.key_hash in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["", "?state=active", "?state=expired", "?state=revoked", "?q=alice"]
)
def test_token_changelist_filters(admin_client_of_superuser: Client, query: str) -> None:
    alice = make_user("alice")
    token_for(alice)
    response = admin_client_of_superuser.get(reverse("admin:chat_authtoken_changelist") + query)
    assert response.status_code == 200
    shown = response.context["cl"].result_count
    assert shown == (0 if query in ("?state=expired", "?state=revoked") else 1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model, query",
    [
        ("chat_room", "?q=general"),
        ("chat_membership", "?q=alice"),
        ("chat_message", "?q=hello"),
        ("chat_authtoken", ""),
        ("notifications_device", "?q=alice"),
    ],
)
def test_every_changelist_and_change_page_renders(
    admin_client_of_superuser: Client, model: str, query: str
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    Message.objects.create(room=room, sender=alice, body="hello " * 30)
    token_for(alice)
    Device.objects.create(user=alice, kind="apns", address="ab" * 32)
    changelist = admin_client_of_superuser.get(reverse(f"admin:{model}_changelist") + query)
    assert changelist.status_code == 200
    assert changelist.context["cl"].result_count == 1
    objects = changelist.context["cl"].result_list
    change = admin_client_of_superuser.get(reverse(f"admin:{model}_change", args=[objects[0].pk]))
    assert change.status_code == 200


@pytest.mark.django_db
def test_room_changelist_counts_members(admin_client_of_superuser: Client) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    make_room("general", [alice, bob])
    make_room("empty", [])
    response = admin_client_of_superuser.get(reverse("admin:chat_room_changelist") + "?o=3")
    counts = {room.name: room.member_count for room in response.context["cl"].result_list}
    assert counts == {"general": 2, "empty": 0}


@pytest.mark.django_db
def test_message_changelist_shows_short_bodies(admin_client_of_superuser: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    Message.objects.create(room=room, sender=alice, body="word " * 100)
    page = admin_client_of_superuser.get(reverse("admin:chat_message_changelist"))
    assert page.status_code == 200
    assert "word " * 100 not in page.content.decode()
    assert "…" in page.content.decode()


def test_admin_needs_a_staff_login(client: Client, db: None) -> None:
    response = client.get(reverse("admin:chat_message_changelist"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, expected",
    [("?q=lobby", {"hello there"}), ("?q=bob", {"bob speaks"}), ("?q=speaks", {"bob speaks"})],
)
def test_messages_are_searchable_by_room_sender_and_text(
    admin_client_of_superuser: Client, query: str, expected: set[str]
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    lobby, general = make_room("lobby", [alice]), make_room("general", [bob])
    Message.objects.create(room=lobby, sender=alice, body="hello there")
    Message.objects.create(room=general, sender=bob, body="bob speaks")
    response = admin_client_of_superuser.get(reverse("admin:chat_message_changelist") + query)
    assert {message.body for message in response.context["cl"].result_list} == expected
