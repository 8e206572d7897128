"""Creates the benchmark's users, rooms, memberships and tokens: `python -m bench.seed`.

Reads a plan from stdin, `{"users": [names], "rooms": [{"name", "members": [names]}]}`,
and prints `{"users": {name: [id, token]}, "rooms": {name: id}}`. Runs in its own process
under bench.settings against a fresh database; bulk inserts send no signals, so Redis starts
empty and the product rebuilds each user's counters from the database when they connect.
"""

import hashlib
import json
import secrets
import sys
from datetime import timedelta
from typing import Any


def seed(plan: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from chat.models import AuthToken, Membership, Room
    from notifications.models import Device

    user_model = get_user_model()
    with transaction.atomic():
        users = [user_model(username=name) for name in plan["users"]]
        for user in users:
            user.set_unusable_password()  # the bench signs in with tokens only
        user_model.objects.bulk_create(users, batch_size=500)
        ids = dict(user_model.objects.values_list("username", "id"))
        tokens = {name: secrets.token_urlsafe(24) for name in plan["users"]}
        expires = timezone.now() + timedelta(days=1)
        AuthToken.objects.bulk_create(
            [
                # Stored as chat.tokens stores them: the SHA-256 hex digest of the token.
                AuthToken(
                    user_id=ids[name],
                    key_hash=hashlib.sha256(token.encode()).hexdigest(),
                    expires_at=expires,
                )
                for name, token in tokens.items()
            ],
            batch_size=500,
        )
        Room.objects.bulk_create(
            [Room(name=room["name"]) for room in plan["rooms"]], batch_size=500
        )
        room_ids = dict(Room.objects.values_list("name", "id"))
        Membership.objects.bulk_create(
            [
                Membership(room_id=room_ids[room["name"]], user_id=ids[member])
                for room in plan["rooms"]
                for member in room["members"]
            ],
            batch_size=1000,
        )
        # One push device per user: pushes go to devices (the bench's backend only waits).
        Device.objects.bulk_create(
            [Device(user_id=ids[name], kind="apns", address=f"{ids[name]:064x}") for name in ids],
            batch_size=500,
        )
    return {
        "users": {name: [ids[name], tokens[name]] for name in plan["users"]},
        "rooms": {room["name"]: room_ids[room["name"]] for room in plan["rooms"]},
    }


def main() -> None:
    import django

    django.setup()
    result = seed(json.load(sys.stdin))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
