import json
from collections import Counter
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.management import CommandError, call_command
from django.test import override_settings

from chat.models import Membership, Message, Room


def seed(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    text = out.getvalue()
    # Exactly one JSON object and nothing else: scripts parse stdout.
    result: dict[str, Any] = json.loads(text)
    assert isinstance(result, dict)
    return result


def members_in_db() -> dict[str, list[int]]:
    members: dict[str, list[int]] = {}
    for name, user_id in Membership.objects.order_by("room_id", "user_id").values_list(
        "room__name", "user_id"
    ):
        members.setdefault(name, []).append(user_id)
    return members


@pytest.mark.django_db
def test_defaults_create_five_users_and_three_rooms_of_three() -> None:
    result = seed()
    users = get_user_model().objects.order_by("id")
    assert [u["username"] for u in result["users"]] == [f"user{n}" for n in range(1, 6)]
    assert [u["id"] for u in result["users"]] == [u.pk for u in users]
    assert [r["name"] for r in result["rooms"]] == ["room1", "room2", "room3"]
    assert [r["id"] for r in result["rooms"]] == list(Room.objects.values_list("id", flat=True))
    assert {r["name"]: r["members"] for r in result["rooms"]} == members_in_db()
    user1 = result["users"][0]["id"]
    for room in result["rooms"]:
        assert len(room["members"]) == 3
        assert user1 in room["members"]
    # The others are dealt out evenly: 3 rooms × 2 seats over 4 users.
    seats = Counter(m for room in result["rooms"] for m in room["members"] if m != user1)
    assert sorted(seats.values()) == [1, 1, 2, 2]
    for n in range(1, 6):
        assert authenticate(username=f"user{n}", password="demo") is not None


@pytest.mark.django_db
def test_second_run_creates_nothing_and_prints_the_same() -> None:
    args = ("--users", "7", "--rooms", "4", "--members-per-room", "4", "--password", "pw-1")
    first = seed(*args)
    counts = (
        get_user_model().objects.count(),
        Room.objects.count(),
        Membership.objects.count(),
    )
    second = seed(*args)
    assert second == first
    assert counts == (
        get_user_model().objects.count(),
        Room.objects.count(),
        Membership.objects.count(),
    )
    assert counts == (7, 4, 16)


@pytest.mark.django_db
def test_a_rerun_resets_the_password() -> None:
    seed("--users", "2", "--password", "first-pw")
    user1 = get_user_model().objects.get(username="user1")
    user1.set_password("changed")
    user1.save()
    seed("--users", "2", "--password", "second-pw")
    assert authenticate(username="user1", password="second-pw") is not None
    assert authenticate(username="user1", password="changed") is None


@pytest.mark.django_db
def test_an_unchanged_password_is_not_rehashed() -> None:
    # A new hash would log the demo users' browser sessions out on every `make run`.
    seed("--users", "1", "--rooms", "0", "--password", "pw-1")
    hashed = get_user_model().objects.get(username="user1").password
    seed("--users", "1", "--rooms", "0", "--password", "pw-1")
    assert get_user_model().objects.get(username="user1").password == hashed


@pytest.mark.django_db
def test_members_per_room_is_capped_at_the_number_of_users() -> None:
    result = seed("--users", "2", "--rooms", "3", "--members-per-room", "10")
    ids = [u["id"] for u in result["users"]]
    assert [r["members"] for r in result["rooms"]] == [ids, ids, ids]


@pytest.mark.django_db
def test_one_member_per_room_is_user1_alone() -> None:
    result = seed("--users", "4", "--rooms", "2", "--members-per-room", "1")
    user1 = result["users"][0]["id"]
    assert [r["members"] for r in result["rooms"]] == [[user1], [user1]]


@pytest.mark.django_db
def test_zero_rooms_creates_only_users() -> None:
    result = seed("--users", "3", "--rooms", "0")
    assert result["rooms"] == []
    assert [u["username"] for u in result["users"]] == ["user1", "user2", "user3"]
    assert not Room.objects.exists()


@pytest.mark.django_db
def test_every_other_user_gets_a_seat_when_there_are_enough() -> None:
    result = seed("--users", "6", "--rooms", "5", "--members-per-room", "2")
    user1 = result["users"][0]["id"]
    others = [r["members"] for r in result["rooms"]]
    assert all(user1 in members and len(members) == 2 for members in others)
    assert sorted(m for members in others for m in members if m != user1) == sorted(
        u["id"] for u in result["users"][1:]
    )


@pytest.mark.django_db
def test_new_members_start_with_nothing_unread() -> None:
    # History before joining is not unread (room_add_member): a room with messages from an
    # earlier run does not flood a member added by a later, larger run.
    seed("--users", "2", "--rooms", "1", "--members-per-room", "1")
    room = Room.objects.get()
    user1 = get_user_model().objects.get(username="user1")
    message = Message.objects.create(room=room, sender=user1, body="before you came")
    seed("--users", "2", "--rooms", "1", "--members-per-room", "2")
    assert Membership.objects.get(room=room, user__username="user2").last_read_message_id == (
        message.pk
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, complaint",
    [
        (("--users", "0"), "--users"),
        (("--rooms", "-1"), "--rooms"),
        (("--members-per-room", "0"), "--members-per-room"),
        (("--password", ""), "--password"),
    ],
)
def test_invalid_arguments_are_command_errors(args: tuple[str, ...], complaint: str) -> None:
    out = StringIO()
    with pytest.raises(CommandError, match=complaint):
        call_command("seed_demo", *args, stdout=out)
    assert out.getvalue() == ""
    assert not get_user_model().objects.exists()


class CountingHasher(MD5PasswordHasher):
    """MD5 (the tests' hasher) that counts the new hashes it makes (each takes a new salt; a
    check re-encodes with the stored one) and the hashes it checks."""

    algorithm = "counting_md5"
    encoded = 0
    verified = 0

    def salt(self) -> str:
        CountingHasher.encoded += 1
        return super().salt()

    def verify(self, password: str, encoded: str) -> bool:
        CountingHasher.verified += 1
        return super().verify(password, encoded)


@pytest.mark.django_db
@override_settings(PASSWORD_HASHERS=["chat.tests.test_seed_demo.CountingHasher"])
def test_the_shared_password_is_hashed_once_for_all_users() -> None:
    CountingHasher.encoded = CountingHasher.verified = 0
    seed("--users", "30", "--rooms", "2", "--password", "pw-1")
    assert CountingHasher.encoded == 1
    hashes = set(get_user_model().objects.values_list("password", flat=True))
    assert len(hashes) == 1
    assert hashes.pop().startswith("counting_md5$")
    # A rerun with more users checks the old hash once and hashes once for the new ones.
    CountingHasher.encoded = CountingHasher.verified = 0
    seed("--users", "40", "--rooms", "2", "--password", "pw-1")
    assert (CountingHasher.encoded, CountingHasher.verified) == (1, 1)
    assert get_user_model().objects.count() == 40
    for n in (1, 30, 40):
        assert authenticate(username=f"user{n}", password="pw-1") is not None
