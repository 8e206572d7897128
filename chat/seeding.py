"""Demo data for `make run` and the acceptance tests (the `seed_demo` command)."""

from typing import TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction

from chat.models import Membership, Room
from chat.services import room_add_member


class SeededUser(TypedDict):
    id: int
    username: str


class SeededRoom(TypedDict):
    id: int
    name: str
    members: list[int]


class Seeded(TypedDict):
    users: list[SeededUser]
    rooms: list[SeededRoom]


def seed_demo(*, users: int, rooms: int, members_per_room: int, password: str) -> Seeded:
    """Users user1..userN with this password, rooms room1..roomM with K members each.

    user1 is in every room; the others are dealt out round-robin, so they share the rooms
    evenly and every room has K members (at most N). Idempotent: a second run with the same
    arguments creates nothing and returns the same thing. Each room's `members` is who is in it
    now, so members added by an earlier run with other arguments are listed too.
    """
    if users < 1:
        raise ValueError("--users must be at least 1")
    if rooms < 0:
        raise ValueError("--rooms must be 0 or more")
    if members_per_room < 1:
        raise ValueError("--members-per-room must be at least 1")
    if not password:
        raise ValueError("--password must not be empty")

    with transaction.atomic():
        seeded_users = _demo_users([f"user{n}" for n in range(1, users + 1)], password)
        others = seeded_users[1:]
        per_room = min(members_per_room, users) - 1  # besides user1
        seeded_rooms = []
        for index in range(rooms):
            room, _ = Room.objects.get_or_create(name=f"room{index + 1}")
            start = index * per_room
            chosen = [seeded_users[0]] + [
                others[(start + offset) % len(others)] for offset in range(per_room)
            ]
            for user in chosen:
                room_add_member(room_id=room.pk, user_id=user.pk)
            seeded_rooms.append(room)
        members: dict[int, list[int]] = {room.pk: [] for room in seeded_rooms}
        for room_id, user_id in (
            Membership.objects.filter(room__in=seeded_rooms)
            .order_by("room_id", "user_id")
            .values_list("room_id", "user_id")
        ):
            members[room_id].append(user_id)

    return {
        "users": [{"id": user.pk, "username": user.get_username()} for user in seeded_users],
        "rooms": [
            {"id": room.pk, "name": room.name, "members": members[room.pk]} for room in seeded_rooms
        ],
    }


def _demo_users(usernames: list[str], password: str) -> list[AbstractBaseUser]:
    """The users, created or brought to this password, hashing it once for them all.

    A hash costs ~0.3 s by design, so one per user made `--users 1001` take minutes. Every new
    user gets the same hash (the salt guards against tables precomputed for many passwords,
    not against demo users sharing one); an existing user's stored hash is checked once per
    distinct hash, as earlier runs gave most of them the same one.
    """
    model = get_user_model()
    existing = {user.get_username(): user for user in model.objects.filter(username__in=usernames)}
    shared_hash = make_password(password)
    matches: dict[str, bool] = {}  # stored hash -> whether it is this password's
    stale = []
    for user in existing.values():
        if user.password not in matches:
            matches[user.password] = check_password(password, user.password)
        # Only when it differs: a new hash would also log the user's browser sessions out.
        if not matches[user.password]:
            user.password = shared_hash
            stale.append(user)
    model.objects.bulk_update(stale, ["password"], batch_size=500)
    new_users = [model(username=name, password=shared_hash) for name in usernames]
    created = {
        user.get_username(): user
        for user in model.objects.bulk_create(
            [user for user in new_users if user.get_username() not in existing], batch_size=500
        )
    }
    return [existing.get(name) or created[name] for name in usernames]


DEMO_STAFF_USERNAME = "staff"
DEMO_STAFF_PASSWORD = "demo"


def seed_demo_staff(
    *, username: str = DEMO_STAFF_USERNAME, password: str = DEMO_STAFF_PASSWORD
) -> tuple[AbstractBaseUser, bool]:
    """A staff superuser for the development admin; returns it and whether it was new.

    Idempotent, and it resets the password and flags each time, so the printed login always
    works. For development only: the password is public.
    """
    user, created = get_user_model().objects.get_or_create(username=username)
    user.set_password(password)
    user.is_active = user.is_staff = user.is_superuser = True
    user.save()
    return user, created
