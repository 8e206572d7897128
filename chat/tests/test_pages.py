"""The web page's server side: sign-in, the page shell, the service worker, device opt-in."""

import json
import re

import pytest
from django.test import Client

from chat.tests.helpers import PASSWORD, make_room, make_user


@pytest.mark.django_db
def test_the_page_asks_for_a_sign_in_first(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"
    login = client.get("/login/?next=/")
    assert login.status_code == 200
    html = login.content.decode()
    assert '<label for="id_username">Username</label>' in html
    assert '<label for="id_password">Password</label>' in html


@pytest.mark.django_db
def test_signing_in_leads_to_the_page_and_signing_out_back_to_the_form(client: Client) -> None:
    make_user("alice")
    wrong = client.post("/login/", {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200 and 'role="alert"' in wrong.content.decode()
    right = client.post("/login/", {"username": "alice", "password": PASSWORD, "next": "/"})
    assert right.status_code == 302 and right["Location"] == "/"
    assert client.get("/login/")["Location"] == "/"  # already signed in
    out = client.post("/logout/")
    assert out.status_code == 302 and out["Location"] == "/login/"
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_the_page_gives_its_script_the_user_and_the_names_of_room_mates(client: Client) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    make_room("general", [alice, bob])
    make_room("elsewhere", [carol])
    client.force_login(alice)
    response = client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    match = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html)
    assert match is not None
    config = json.loads(match.group(1))
    assert config["userId"] == alice.pk
    assert config["names"] == {str(alice.pk): "alice", str(bob.pk): "bob"}
    assert '<script type="module" src="/static/chat/app.js">' in html
    assert 'aria-live="polite"' in html
    assert '<label for="compose"' in html
    assert 'name="viewport"' in html


@pytest.mark.django_db
def test_the_page_can_ask_again_for_the_names_of_room_mates(client: Client) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = make_room("general", [alice, bob])
    make_room("other", [carol])
    assert client.get("/names.json").status_code == 302  # signed in only
    client.force_login(alice)
    names = client.get("/names.json").json()["names"]
    assert names == {str(alice.pk): "alice", str(bob.pk): "bob"}
    # A member who joins after the page loaded is known the next time it asks.
    room.memberships.create(user=carol)
    assert client.get("/names.json").json()["names"][str(carol.pk)] == "carol"


@pytest.mark.django_db
def test_a_username_cannot_break_out_of_the_config(client: Client) -> None:
    alice = make_user("alice")
    mate = make_user("</script><script>alert(1)</script>")
    make_room("general", [alice, mate])
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert "<script>alert(1)" not in html


def test_the_service_worker_is_served_from_the_root_with_its_scope_allowed(
    client: Client,
) -> None:
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript"
    assert response["Service-Worker-Allowed"] == "/"
    assert "no-cache" in response["Cache-Control"]
    body = response.content.decode()
    assert 'addEventListener("push"' in body and "notificationclick" in body
    assert client.head("/sw.js").status_code == 200
    assert client.post("/sw.js").status_code == 405


@pytest.mark.django_db
def test_the_pages_push_opt_in_registers_with_its_session_and_csrf_token() -> None:
    alice = make_user("alice")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    browser.get("/")  # sets the CSRF cookie, as the page's logout form does
    token = browser.cookies["csrftoken"].value
    body = json.dumps(
        {
            "kind": "webpush",
            "subscription": {
                "endpoint": "https://push.example.com/send/abc",
                "keys": {
                    "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u"
                    "-Ts1XbjhazAkj7I99e8QcYP7DkM",
                    "auth": "tBHItJI5svbpez7KI4CCXg",
                },
            },
        }
    )
    refused = browser.post("/api/devices", body, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    response = browser.post(
        "/api/devices", body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 201, response.content
    assert isinstance(response.json()["id"], int)
