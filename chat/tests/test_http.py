import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import DatabaseError
from django.test import Client, override_settings
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.models import AuthToken, Message
from chat.tests.helpers import PASSWORD, connect_user, make_room, make_user, token_for

# A listed room with nothing unread and no message, at the default level.
NOTHING_UNREAD = {"unreadCount": 0, "mentionCount": 0, "level": "all", "lastMessage": None}


def post_json(client: Client, url: str, payload: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return client.post(url, body, content_type="application/json", headers=headers)


def get_json(client: Client, url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(url, headers=headers)


def send(client: Client, room_id: int, token: str, message: str, client_id: str) -> Any:
    return post_json(
        client,
        f"/api/rooms/{room_id}/messages",
        {"message": message, "clientMessageId": client_id},
        token,
    )


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]


# --- POST /api/auth/token ----------------------------------------------------------------


@pytest.mark.django_db
def test_token_for_right_credentials_authenticates_later_requests(client: Client) -> None:
    alice = make_user("alice")
    response = post_json(client, "/api/auth/token", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["userId"] == alice.pk
    assert isinstance(body["token"], str) and len(body["token"]) >= 32
    # Only a hash is kept.
    assert not AuthToken.objects.filter(key_hash=body["token"]).exists()
    assert get_json(Client(), "/api/rooms", body["token"]).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        "{not json",
        "[1, 2]",
        '"alice"',
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": 7, "password": PASSWORD},
        {"username": "alice", "password": ""},
        b"\xff\xfe",
    ],
)
def test_token_refuses_malformed_body(client: Client, payload: Any) -> None:
    make_user("alice")
    assert_error(post_json(client, "/api/auth/token", payload), 400, "bad_request")
    assert AuthToken.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("username, password", [("alice", "wrong"), ("nobody", PASSWORD)])
def test_token_refuses_wrong_credentials(client: Client, username: str, password: str) -> None:
    make_user("alice")
    response = post_json(client, "/api/auth/token", {"username": username, "password": password})
    assert_error(response, 401, "invalid_credentials")
    assert AuthToken.objects.count() == 0


@pytest.mark.django_db
def test_token_refuses_inactive_user(client: Client) -> None:
    alice = make_user("alice")
    alice.is_active = False
    alice.save()
    response = post_json(client, "/api/auth/token", {"username": "alice", "password": PASSWORD})
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.django_db
def test_wrong_method_is_a_json_405(client: Client) -> None:
    response = client.get("/api/auth/token")
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    alice = make_user("alice")
    assert_error(post_json(client, "/api/rooms", {}, token_for(alice)), 405, "method_not_allowed")


# --- authentication ---------------------------------------------------------------------


@pytest.mark.django_db
def test_rooms_without_credentials_is_401(client: Client) -> None:
    response = client.get("/api/rooms")
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header", ["Bearer not-a-token", "Bearer ", "Basic YWxpY2U6cHc=", "Bearer " + "x" * 500]
)
def test_unknown_token_or_scheme_is_401(client: Client, header: str) -> None:
    make_user("alice")
    assert_error(client.get("/api/rooms", headers={"Authorization": header}), 401, "unauthorized")


@pytest.mark.django_db
def test_expired_token_is_401(client: Client) -> None:
    alice = make_user("alice")
    token = token_for(alice)
    AuthToken.objects.filter(user=alice).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(get_json(client, "/api/rooms", token), 401, "unauthorized")


@pytest.mark.django_db
def test_revoked_token_is_401_while_others_still_work(client: Client) -> None:
    alice = make_user("alice")
    revoked = token_for(alice)
    AuthToken.objects.update(revoked_at=timezone.now())
    kept = token_for(alice)
    assert_error(get_json(client, "/api/rooms", revoked), 401, "unauthorized")
    assert get_json(client, "/api/rooms", kept).status_code == 200


@pytest.mark.django_db
def test_token_of_deactivated_user_is_401(client: Client) -> None:
    alice = make_user("alice")
    token = token_for(alice)
    alice.is_active = False
    alice.save()
    assert_error(get_json(client, "/api/rooms", token), 401, "unauthorized")


@pytest.mark.django_db
def test_bad_token_is_refused_even_beside_a_session(client: Client) -> None:
    client.force_login(make_user("alice"))
    assert client.get("/api/rooms").status_code == 200
    assert_error(get_json(client, "/api/rooms", "forged"), 401, "unauthorized")


@pytest.mark.django_db
def test_session_posts_need_the_csrf_token_bearer_posts_do_not() -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    payload = {"message": "hi", "clientMessageId": "c1"}
    url = f"/api/rooms/{room.pk}/messages"

    assert_error(post_json(browser, url, payload), 403, "csrf_failed")
    assert not Message.objects.exists()

    secret = "s3cret" * 5 + "ab"  # a CSRF secret: 32 characters
    browser.cookies["csrftoken"] = secret
    response = browser.post(
        url, json.dumps(payload), content_type="application/json", headers={"X-CSRFToken": secret}
    )
    assert response.status_code == 201

    script = Client(enforce_csrf_checks=True)
    response = post_json(script, url, {"message": "hi", "clientMessageId": "c2"}, token_for(alice))
    assert response.status_code == 201
    assert Message.objects.count() == 2


# --- GET /api/rooms -----------------------------------------------------------------------


@pytest.mark.django_db
def test_rooms_lists_only_the_users_rooms(client: Client) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    make_room("secret", [bob])
    random = make_room("random", [alice])
    response = get_json(client, "/api/rooms", token_for(alice))
    assert response.status_code == 200
    assert response.json() == {
        "totalUnreadCount": 0,
        "totalMentionCount": 0,
        "rooms": [
            {"id": general.pk, "name": "general", **NOTHING_UNREAD},
            {"id": random.pk, "name": "random", **NOTHING_UNREAD},
        ],
    }


@pytest.mark.django_db(transaction=True)
def test_rooms_show_a_message_from_another_member_as_unread(client: Client) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    general = make_room("general", [alice, bob])
    quiet = make_room("quiet", [alice, bob])
    sent = send(client, general.pk, token_for(alice), "hello bob", "c1").json()

    rooms = get_json(client, "/api/rooms", token_for(bob)).json()
    assert rooms == {
        "totalUnreadCount": 1,
        "totalMentionCount": 0,
        "rooms": [
            {
                "id": general.pk,
                "name": "general",
                "unreadCount": 1,
                "mentionCount": 0,
                "level": "all",
                "lastMessage": {
                    "id": sent["messageId"],
                    "senderId": alice.pk,
                    "body": "hello bob",
                    "createdAt": sent["createdAt"],
                },
            },
            {"id": quiet.pk, "name": "quiet", **NOTHING_UNREAD},
        ],
    }
    # Never unread for its sender.
    mine = get_json(client, "/api/rooms", token_for(alice)).json()
    assert mine["totalUnreadCount"] == 0
    assert mine["rooms"][0]["unreadCount"] == 0
    assert mine["rooms"][0]["lastMessage"]["id"] == sent["messageId"]


# --- POST /api/rooms/{id}/messages --------------------------------------------------------


@pytest.mark.django_db
def test_send_saves_the_message(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    response = send(client, room.pk, token_for(alice), "hello", "c1")
    assert response.status_code == 201
    body = response.json()
    message = Message.objects.get()
    assert body == {
        "messageId": message.pk,
        "createdAt": message.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert body["createdAt"].endswith("Z")
    assert (message.room_id, message.sender_id, message.body) == (room.pk, alice.pk, "hello")
    assert message.client_message_id == "c1"


@pytest.mark.django_db
def test_repeated_client_message_id_is_200_with_the_same_body(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    token = token_for(alice)
    first = send(client, room.pk, token, "hello", "c1")
    again = send(client, room.pk, token, "hello", "c1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_send_to_a_room_of_others_is_403(client: Client) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room("secret", [bob])
    assert_error(send(client, room.pk, token_for(alice), "let me in", "c1"), 403, "not_a_member")
    assert not Message.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("room_id", [999_999, 2**64])  # the second overflows a bigint
def test_send_to_an_unknown_room_is_404(client: Client, room_id: int) -> None:
    alice = make_user("alice")
    assert_error(send(client, room_id, token_for(alice), "anyone?", "c1"), 404, "not_found")
    assert not Message.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        "{broken",
        "[]",
        {"clientMessageId": "c1"},
        {"message": "", "clientMessageId": "c1"},
        {"message": "   ", "clientMessageId": "c1"},
        {"message": 42, "clientMessageId": "c1"},
        {"message": "hi"},
        {"message": "hi", "clientMessageId": 7},
        {"message": "hi", "clientMessageId": "x" * 101},
    ],
)
def test_send_refuses_malformed_requests(client: Client, payload: Any) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    response = post_json(client, f"/api/rooms/{room.pk}/messages", payload, token_for(alice))
    assert_error(response, 400, "bad_request")
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_message_over_the_length_limit_is_413(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    token = token_for(alice)
    assert_error(send(client, room.pk, token, "x" * 4001, "c1"), 413, "too_large")
    assert send(client, room.pk, token, "x" * 4000, "c2").status_code == 201
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_body_over_64_kib_is_413(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    # Short message, padded body: the frame limit applies to the request, not the message.
    payload = json.dumps({"message": "hi", "clientMessageId": "c1", "pad": "x" * 65 * 1024})
    response = post_json(client, f"/api/rooms/{room.pk}/messages", payload, token_for(alice))
    assert_error(response, 413, "too_large")
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_sending_too_fast_is_429(client: Client) -> None:
    alice = make_user("alice")
    room = make_room("general", [alice])
    token = token_for(alice)
    with override_settings(CHAT_RATE_LIMIT_MESSAGES=2, CHAT_RATE_LIMIT_WINDOW_SECONDS=3600):
        assert send(client, room.pk, token, "one", "c1").status_code == 201
        assert send(client, room.pk, token, "two", "c2").status_code == 201
        assert_error(send(client, room.pk, token, "three", "c3"), 429, "rate_limited")
        # A retry of a saved message is not a new message: still answered.
        assert send(client, room.pk, token, "one", "c1").status_code == 200
    assert list(Message.objects.values_list("body", flat=True)) == ["one", "two"]


@pytest.mark.django_db(transaction=True)
async def test_http_send_reaches_websocket_clients_like_a_websocket_send() -> None:
    alice = await database_sync_to_async(make_user)("alice")
    bob = await database_sync_to_async(make_user)("bob")
    room = await database_sync_to_async(make_room)("general", [alice, bob])
    token = await database_sync_to_async(token_for)(alice)
    watcher, _ = await connect_user(bob)
    response = await sync_to_async(send)(Client(), room.pk, token, "over http", "c1")
    assert response.status_code == 201
    updated = await watcher.receive_type("chat-room-updated")
    assert updated["roomId"] == room.pk
    assert updated["lastMessage"]["body"] == "over http"
    badge = await watcher.receive_type("total-unread-count-updated")
    assert (badge["totalUnreadCount"], badge["roomUnreadCount"]) == (1, 1)
    await watcher.close()


# --- /healthz and /metrics ----------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_reports_both_up(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == response.json()["redis"] == "ok"


class _Down:
    def __getattr__(self, name: str) -> Any:
        raise RedisConnectionError("connection refused")

    def cursor(self) -> Any:
        raise DatabaseError("database is gone")


@pytest.mark.django_db
def test_healthz_names_redis_when_it_is_down(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chat.views.redis_connection", lambda: _Down())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert (response.json()["database"], response.json()["redis"]) == ("ok", "down")


@pytest.mark.django_db
def test_healthz_names_the_database_when_it_is_down(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chat.views.connection", _Down())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert (response.json()["database"], response.json()["redis"]) == ("down", "ok")


@override_settings(DEBUG=True)
def test_metrics_serves_prometheus_text(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# TYPE badge_latency_seconds histogram" in text
    assert "badge_latency_seconds_bucket" in text
