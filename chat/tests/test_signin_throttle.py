"""Sign-in throttling (shared/PROTOCOL.md, "Running it in production"): 10 failures for one
username from one address within 5 minutes refuse that pair, on /login/ and the token API,
until the window has passed, even with the right password; other pairs are not affected.

Time passes by ageing the recorded failures in Redis (moving their times back), never by
sleeping.
"""

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from chat import signin_throttle
from chat.tests.helpers import PASSWORD, make_user
from chatproject.redis_client import redis_connection

pytestmark = pytest.mark.django_db

HOME = "10.0.0.1"
ELSEWHERE = "10.0.0.2"


def api_sign_in(client: Client, username: str, password: str, address: str = HOME) -> Any:
    return client.post(
        "/api/auth/token",
        json.dumps({"username": username, "password": password}),
        content_type="application/json",
        REMOTE_ADDR=address,
    )


def page_sign_in(client: Client, username: str, password: str, address: str = HOME) -> Any:
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def fail(times: int, username: str = "alice", address: str = HOME, via: str = "api") -> None:
    client = Client()
    for _ in range(times):
        if via == "api":
            assert api_sign_in(client, username, "wrong", address).status_code == 401
        else:
            response = page_sign_in(client, username, "wrong", address)
            assert response.status_code == 200
            assert b"didn't match" in response.content


def age_failures(seconds: float, username: str = "alice", address: str = HOME) -> None:
    """Move the pair's recorded failures `seconds` into the past."""
    key = signin_throttle._pair_key(username, address)
    redis = redis_connection()
    members: list[bytes] = redis.zrange(key, 0, -1)  # type: ignore[assignment]
    for member in members:
        redis.zincrby(key, -seconds, member)


def test_the_eleventh_api_attempt_is_refused_even_with_the_right_password() -> None:
    make_user("alice")
    fail(9)
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 200  # 9 are not enough
    fail(1)
    response = api_sign_in(Client(), "alice", PASSWORD)
    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited"
    assert response.json()["message"]
    assert 295 <= int(response["Retry-After"]) <= 300


def test_the_login_page_refuses_with_a_429_page_saying_so() -> None:
    make_user("alice")
    fail(10, via="page")
    response = page_sign_in(Client(), "alice", PASSWORD)
    assert response.status_code == 429
    assert 295 <= int(response["Retry-After"]) <= 300
    text = response.content.decode()
    assert "Too many failed sign-ins for this username from your address" in text
    assert "Try again in 5 minutes" in text
    assert "_auth_user_id" not in Client().session  # nobody was signed in


def test_page_and_api_failures_count_together() -> None:
    make_user("alice")
    fail(5, via="page")
    fail(5, via="api")
    assert page_sign_in(Client(), "alice", PASSWORD).status_code == 429
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 429


def test_other_addresses_and_other_usernames_are_not_affected() -> None:
    make_user("alice")
    make_user("bob")
    fail(10)
    assert api_sign_in(Client(), "alice", PASSWORD, ELSEWHERE).status_code == 200
    assert page_sign_in(Client(), "alice", PASSWORD, ELSEWHERE).status_code == 302
    assert api_sign_in(Client(), "bob", PASSWORD, HOME).status_code == 200
    assert api_sign_in(Client(), "alice", PASSWORD, HOME).status_code == 429


def test_the_lock_ends_when_the_window_has_passed_and_refusals_do_not_extend_it() -> None:
    make_user("alice")
    fail(10)
    for _ in range(5):  # refused, not counted
        assert api_sign_in(Client(), "alice", "wrong").status_code == 429
    age_failures(299)
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 429
    age_failures(2)
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 200


def test_the_window_slides() -> None:
    # Five failures, four minutes later five more: ten within five minutes, locked. A minute
    # and a half later the first five are over five minutes old: nine are not ten.
    make_user("alice")
    fail(5)
    age_failures(240)
    fail(5)
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 429
    age_failures(90)
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 200


def test_a_username_counts_as_the_login_form_normalizes_it() -> None:
    make_user("alice")
    fail(10, username="\uff41lice")  # a fullwidth "a": the form would read "alice"
    assert page_sign_in(Client(), "alice", PASSWORD).status_code == 429


def test_unknown_usernames_are_throttled_alike() -> None:
    fail(10, username="nobody")
    assert api_sign_in(Client(), "nobody", "anything").status_code == 429


@override_settings(CHAT_SIGNIN_FAILURE_LIMIT=3)
def test_the_limit_is_a_setting() -> None:
    make_user("alice")
    fail(3)
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 429


# --- the client's address ----------------------------------------------------------------


def test_x_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    make_user("alice")
    client = Client()
    for n in range(10):  # a client that varies the header gains nothing
        response = client.post(
            "/api/auth/token",
            json.dumps({"username": "alice", "password": "wrong"}),
            content_type="application/json",
            REMOTE_ADDR=HOME,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}",
        )
        assert response.status_code == 401
    assert api_sign_in(Client(), "alice", PASSWORD, HOME).status_code == 429


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_one_trusted_proxy_the_address_it_saw_counts() -> None:
    make_user("alice")
    proxy = "127.0.0.1"

    def through_proxy(forwarded_for: str, password: str) -> int:
        response = Client().post(
            "/api/auth/token",
            json.dumps({"username": "alice", "password": password}),
            content_type="application/json",
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )
        return int(response.status_code)

    # The client writes what it likes on the left; the proxy appends what it saw.
    for n in range(10):
        assert through_proxy(f"192.0.2.{n}, {HOME}", "wrong") == 401
    assert through_proxy(HOME, PASSWORD) == 429
    assert through_proxy(ELSEWHERE, PASSWORD) == 200  # another client behind the same proxy
    assert through_proxy("", PASSWORD) == 200  # not through the proxy: the peer counts


# --- the admin ----------------------------------------------------------------------------


def test_the_admin_lists_locked_pairs_and_unlocks_them(admin_client: Client) -> None:
    make_user("alice")
    fail(10)
    fail(3, username="bob")  # not locked
    page = admin_client.get(reverse("admin:chat_signinlock_changelist"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "alice" in text and HOME in text
    assert "Unlock alice from 10.0.0.1" in text
    assert "bob" not in text

    response = admin_client.post(
        reverse("admin:chat_signinlock_changelist"), {"username": "alice", "address": HOME}
    )
    assert response.status_code == 302
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 200
    assert "No sign-in is locked now" in admin_client.get(response["Location"]).content.decode()
    # Unlocked means forgotten: it takes ten new failures to lock again.
    fail(9)
    assert api_sign_in(Client(), "alice", PASSWORD).status_code == 200


def test_staff_need_the_permissions_to_see_and_to_unlock(client: Client) -> None:
    staff = get_user_model().objects.create_user("staffer", password="pw", is_staff=True)
    client.force_login(staff)
    url = reverse("admin:chat_signinlock_changelist")
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_signinlock"))
    assert client.get(url).status_code == 200
    assert client.post(url, {"username": "alice", "address": HOME}).status_code == 403


def test_the_admin_login_is_throttled_too() -> None:
    get_user_model().objects.create_superuser("root", "root@example.com", "root-pw")
    client = Client()
    url = reverse("admin:login")
    for _ in range(10):
        client.post(url, {"username": "root", "password": "wrong"}, REMOTE_ADDR=HOME)
    response = client.post(url, {"username": "root", "password": "root-pw"}, REMOTE_ADDR=HOME)
    assert response.status_code == 200
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session
