"""GET /api/rooms/{id}/messages: the history page the web page scrolls through."""

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat.models import Message, Room
from chat.selectors import MAX_ID
from chat.tests.helpers import make_room, make_user, token_for
from chat.tests.test_http import assert_error, get_json


def history(client: Client, room_id: int, token: str | None, query: str = "") -> Any:
    return get_json(client, f"/api/rooms/{room_id}/messages{query}", token)


def fill(room: Room, sender: Any, count: int) -> list[int]:
    Message.objects.bulk_create(
        [Message(room=room, sender=sender, body=f"m{n}") for n in range(count)]
    )
    return list(Message.objects.filter(room=room).order_by("id").values_list("id", flat=True))


@pytest.mark.django_db
def test_history_pages_newest_first_until_has_more_is_false(client: Client) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("general", [alice, bob])
    ids = fill(room, bob, 5)
    token = token_for(alice)

    first = history(client, room.pk, token, "?limit=2")
    assert first.status_code == 200
    body = first.json()
    assert [m["id"] for m in body["messages"]] == [ids[4], ids[3]]
    assert body["hasMore"] is True
    newest = body["messages"][0]
    assert newest == {
        "id": ids[4],
        "senderId": bob.pk,
        "body": "m4",
        "createdAt": newest["createdAt"],
        "editedAt": None,
    }
    assert newest["createdAt"].endswith("Z")

    second = history(client, room.pk, token, f"?limit=2&before={ids[3]}").json()
    assert [m["id"] for m in second["messages"]] == [ids[2], ids[1]]
    assert second["hasMore"] is True
    last = history(client, room.pk, token, f"?limit=2&before={ids[1]}").json()
    assert last == {"messages": [last["messages"][0]], "hasMore": False}
    assert last["messages"][0]["id"] == ids[0]


@pytest.mark.django_db
def test_history_limit_defaults_to_50_and_is_capped_at_200(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    fill(room, alice, 230)
    token = token_for(alice)
    default = history(client, room.pk, token).json()
    assert len(default["messages"]) == 50 and default["hasMore"] is True
    capped = history(client, room.pk, token, "?limit=100000000000000000000000").json()
    assert len(capped["messages"]) == 200 and capped["hasMore"] is True


@pytest.mark.django_db
def test_history_of_an_empty_room_and_a_cursor_past_every_id(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    token = token_for(alice)
    assert history(client, room.pk, token).json() == {"messages": [], "hasMore": False}
    ids = fill(room, alice, 2)
    beyond = history(client, room.pk, token, f"?before={MAX_ID + 10}").json()
    assert [m["id"] for m in beyond["messages"]] == [ids[1], ids[0]]
    assert history(client, room.pk, token, "?before=1").json()["messages"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "?before=abc",
        "?before=",
        "?before=-1",
        "?before=0",
        "?before=1.5",
        "?before=+3",
        "?before=%203",
        "?before=%EF%BC%91",  # a full-width digit: isdigit() but not ours
        "?limit=0",
        "?limit=-5",
        "?limit=ten",
        "?limit=",
        "?limit=1e3",
        "?limit=" + "9" * 5000,
    ],
)
def test_history_refuses_junk_in_before_and_limit(client: Client, query: str) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    assert_error(history(client, room.pk, token_for(alice), query), 400, "bad_request")


@pytest.mark.django_db
def test_history_is_for_members_only(client: Client) -> None:
    alice, mallory = make_user("alice"), make_user("mallory")
    room = make_room("general", [alice])
    fill(room, alice, 3)
    assert_error(history(client, room.pk, token_for(mallory)), 403, "not_a_member")
    assert_error(history(Client(), room.pk, None), 401, "unauthorized")


@pytest.mark.django_db
@pytest.mark.parametrize("room_id", [0, 999_999, MAX_ID, MAX_ID + 1, 10**30])
def test_history_of_an_unknown_room_is_404(client: Client, room_id: int) -> None:
    alice = make_user("alice")
    make_room("general", [alice])
    assert_error(history(client, room_id, token_for(alice)), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("room_id", ["abc", "-1", "1.5", "%201", "1e3"])
def test_history_of_a_room_id_that_is_not_a_number_is_a_json_404(
    client: Client, room_id: str
) -> None:
    alice = make_user("alice")
    assert_error(
        get_json(client, f"/api/rooms/{room_id}/messages", token_for(alice)), 404, "not_found"
    )


@pytest.mark.django_db
def test_an_unknown_api_address_is_a_json_404(client: Client) -> None:
    assert_error(get_json(client, "/api/nope", None), 404, "not_found")
    assert_error(client.post("/api/rooms/1/nope"), 404, "not_found")


@pytest.mark.django_db
def test_history_with_a_session_cookie_needs_no_csrf_token() -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    fill(room, alice, 1)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    response = history(browser, room.pk, None)
    assert response.status_code == 200
    assert len(response.json()["messages"]) == 1


@pytest.mark.django_db
def test_history_runs_two_queries_however_long_the_page() -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    fill(room, alice, 120)
    browser = Client()
    browser.force_login(alice)
    history(browser, room.pk, None)  # the session and user are loaded once per request
    with CaptureQueriesContext(connection) as queries:
        response = history(browser, room.pk, None, "?limit=100")
    assert response.status_code == 200
    # The user (authentication; the session comes from the cache), then the membership and
    # the page itself.
    history_queries = [q["sql"] for q in queries.captured_queries if "chat_" in q["sql"]]
    assert len(history_queries) == 2, history_queries
    assert len(queries.captured_queries) == 3, [q["sql"] for q in queries.captured_queries]
