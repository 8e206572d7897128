"""PUT /api/rooms/{id}/mute (shared/PROTOCOL.md): the room's notification level `none` or `all`."""

import json
from typing import Any

import pytest
from django.test import Client

from chat.models import Level, Membership, Room
from chat.tests.helpers import make_room, make_user, token_for

pytestmark = pytest.mark.django_db


def _mute(client: Client, token: str, room_id: int, body: Any) -> Any:
    return client.put(
        f"/api/rooms/{room_id}/mute",
        body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_a_member_mutes_and_unmutes_a_room(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    token = token_for(alice)
    response = _mute(client, token, room.pk, {"muted": True})
    assert (response.status_code, response.json()) == (200, {"roomId": room.pk, "muted": True})
    assert _mute(client, token, room.pk, {"muted": True}).status_code == 200  # idempotent
    assert Membership.objects.get(room=room, user=alice).level == Level.NONE
    response = _mute(client, token, room.pk, {"muted": False})
    assert (response.status_code, response.json()) == (200, {"roomId": room.pk, "muted": False})
    assert Membership.objects.get(room=room, user=alice).level == Level.ALL


def test_muting_is_for_members_of_rooms_that_exist(client: Client) -> None:
    alice = make_user("alice")
    others = Room.objects.create(name="others")
    token = token_for(alice)
    refused = _mute(client, token, others.pk, {"muted": True})
    assert (refused.status_code, refused.json()["error"]) == (403, "not_a_member")
    unknown = _mute(client, token, others.pk + 100, {"muted": True})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert not Membership.objects.filter(room=others).exists()


@pytest.mark.parametrize("body", [{}, {"muted": "yes"}, {"muted": 1}, "[]", "not json"])
def test_junk_is_a_bad_request(client: Client, body: Any) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    response = _mute(client, token_for(alice), room.pk, body)
    assert (response.status_code, response.json()["error"]) == (400, "bad_request")


def test_muting_needs_a_user_and_a_put(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    anonymous = client.put(f"/api/rooms/{room.pk}/mute", "{}", content_type="application/json")
    assert anonymous.status_code == 401
    wrong = client.get(
        f"/api/rooms/{room.pk}/mute", headers={"Authorization": f"Bearer {token_for(alice)}"}
    )
    assert wrong.status_code == 405
