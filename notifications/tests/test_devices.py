import json
from typing import Any

import pytest
from django.test import Client

from chat.tests.helpers import make_user, token_for
from notifications.models import Device

P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"
ENDPOINT = "https://fcm.googleapis.com/fcm/send/dpH5lCsTSSM:APA91bHqjZxM0VImWWqDRN7U"
APNS_TOKEN = "a1b2c3d4" * 8


def webpush(endpoint: str = ENDPOINT, **keys: str) -> dict[str, Any]:
    return {
        "kind": "webpush",
        "subscription": {"endpoint": endpoint, "keys": {"p256dh": P256DH, "auth": AUTH, **keys}},
    }


def register(client: Client, token: str, payload: Any) -> Any:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post(
        "/api/devices",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def delete(client: Client, token: str, device_id: int) -> Any:
    return client.delete(f"/api/devices/{device_id}", headers={"Authorization": f"Bearer {token}"})


def assert_bad_request(response: Any) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "bad_request"
    assert response.json()["message"]


@pytest.mark.django_db
def test_register_webpush_device(client: Client) -> None:
    alice = make_user("alice")
    response = register(client, token_for(alice), webpush())
    assert response.status_code == 201
    device = Device.objects.get()
    assert response.json() == {"id": device.pk}
    assert (device.user_id, device.kind, device.address) == (alice.pk, "webpush", ENDPOINT)
    assert device.keys == {"p256dh": P256DH, "auth": AUTH}


@pytest.mark.django_db
def test_register_apns_device_normalizes_the_token(client: Client) -> None:
    alice = make_user("alice")
    token = token_for(alice)
    response = register(client, token, {"kind": "apns", "token": APNS_TOKEN.upper()})
    assert response.status_code == 201
    device = Device.objects.get()
    assert (device.kind, device.address, device.keys) == ("apns", APNS_TOKEN, {})
    # The same token in another case is the same device.
    again = register(client, token, {"kind": "apns", "token": APNS_TOKEN})
    assert (again.status_code, again.json()) == (200, {"id": device.pk})


@pytest.mark.django_db
def test_reregistering_returns_the_same_device_and_renews_its_keys(client: Client) -> None:
    alice = make_user("alice")
    token = token_for(alice)
    first = register(client, token, webpush())
    again = register(client, token, webpush())
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    renewed = register(client, token, webpush(auth="bmV3LWF1dGgta2V5LTE2Qg"))
    assert (renewed.status_code, renewed.json()) == (200, first.json())
    assert Device.objects.get().keys["auth"] == "bmV3LWF1dGgta2V5LTE2Qg"


@pytest.mark.django_db
def test_an_address_registered_by_another_user_moves_to_the_new_one(client: Client) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    first = register(client, token_for(alice), webpush())
    moved = register(client, token_for(bob), webpush())
    assert moved.status_code == 201
    assert moved.json() == first.json()
    device = Device.objects.get()
    assert device.user_id == bob.pk
    # Alice no longer owns it.
    assert delete(client, token_for(alice), device.pk).status_code == 404


@pytest.mark.django_db
def test_distinct_addresses_are_distinct_devices(client: Client) -> None:
    alice = make_user("alice")
    token = token_for(alice)
    ids = {
        register(client, token, webpush()).json()["id"],
        register(client, token, webpush(endpoint=ENDPOINT + "x")).json()["id"],
        register(client, token, {"kind": "apns", "token": APNS_TOKEN}).json()["id"],
    }
    assert len(ids) == 3
    assert Device.objects.filter(user=alice).count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        "{oops",
        "[]",
        {},
        {"kind": "sms", "token": APNS_TOKEN},
        {"kind": 1},
        {"kind": "webpush"},
        {"kind": "webpush", "subscription": "https://push.example/x"},
        {"kind": "webpush", "subscription": {"keys": {"p256dh": P256DH, "auth": AUTH}}},
        webpush(endpoint="http://push.example/insecure"),
        webpush(endpoint="javascript:alert(1)"),
        webpush(endpoint="https://"),
        webpush(endpoint="https://push.example/" + "x" * 2000),
        {"kind": "webpush", "subscription": {"endpoint": 5, "keys": {"p256dh": P256DH}}},
        {"kind": "webpush", "subscription": {"endpoint": ENDPOINT}},
        {"kind": "webpush", "subscription": {"endpoint": ENDPOINT, "keys": ["a", "b"]}},
        {"kind": "webpush", "subscription": {"endpoint": ENDPOINT, "keys": {"p256dh": P256DH}}},
        webpush(auth=""),
        webpush(p256dh="not base64!"),
        webpush(p256dh="x" * 201),
        {"kind": "apns"},
        {"kind": "apns", "token": 1234},
        {"kind": "apns", "token": "a1b2" * 15},  # 60 characters
        {"kind": "apns", "token": "a" * 201},
        {"kind": "apns", "token": "g" * 64},
    ],
)
def test_register_refuses_invalid_devices(client: Client, payload: Any) -> None:
    alice = make_user("alice")
    assert_bad_request(register(client, token_for(alice), payload))
    assert not Device.objects.exists()


@pytest.mark.django_db
def test_register_needs_authentication(client: Client) -> None:
    response = client.post("/api/devices", json.dumps(webpush()), content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert not Device.objects.exists()


@pytest.mark.django_db
def test_delete_own_device(client: Client) -> None:
    alice = make_user("alice")
    token = token_for(alice)
    device_id = register(client, token, webpush()).json()["id"]
    response = delete(client, token, device_id)
    assert response.status_code == 204
    assert response.content == b""
    assert not Device.objects.exists()
    # Gone: a second delete finds nothing.
    assert delete(client, token, device_id).status_code == 404


@pytest.mark.django_db
def test_delete_someone_elses_or_unknown_device_is_404(client: Client) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    device_id = register(client, token_for(alice), webpush()).json()["id"]
    for target in (device_id, device_id + 1000):
        response = delete(client, token_for(bob), target)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    assert Device.objects.filter(pk=device_id, user=alice).exists()


@pytest.mark.django_db
def test_devices_refuse_wrong_methods(client: Client) -> None:
    alice = make_user("alice")
    token = token_for(alice)
    listed = client.get("/api/devices", headers={"Authorization": f"Bearer {token}"})
    assert (listed.status_code, listed.json()["error"]) == (405, "method_not_allowed")
    device_id = register(client, token, webpush()).json()["id"]
    posted = client.post(f"/api/devices/{device_id}", headers={"Authorization": f"Bearer {token}"})
    assert (posted.status_code, posted.json()["error"]) == (405, "method_not_allowed")
    assert delete(Client(), "not-a-token", device_id).status_code == 401
    assert Device.objects.filter(pk=device_id).exists()


@pytest.mark.django_db
def test_registering_a_deactivated_device_again_reactivates_it(client: Client) -> None:
    from django.utils import timezone

    alice = make_user("alice")
    token = token_for(alice)
    device_id = register(client, token, {"kind": "apns", "token": APNS_TOKEN}).json()["id"]
    Device.objects.filter(pk=device_id).update(active=False, deactivated_at=timezone.now())
    again = register(client, token, {"kind": "apns", "token": APNS_TOKEN})
    assert (again.status_code, again.json()["id"]) == (200, device_id)
    device = Device.objects.get(pk=device_id)
    assert device.active and device.deactivated_at is None
