"""VAPID keys: the generator's output, the forms WEBPUSH_VAPID_PRIVATE_KEY takes, the endpoint."""

import io

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import call_command
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from notifications.tests.doubles.fixtures import VapidKeys
from notifications.vapid import (
    VapidKeyError,
    b64url,
    b64url_decode,
    load_vapid_private_key,
    public_key_b64url,
)


def test_generated_keys_load_back_as_a_pair() -> None:
    out = io.StringIO()
    call_command("generate_vapid_keys", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("WEBPUSH_VAPID_PRIVATE_KEY=")
    private_key = lines[0].split("=", 1)[1]
    public_key = lines[1].removeprefix("public key: ")

    key = load_vapid_private_key(private_key)

    assert public_key_b64url(key) == public_key
    point = b64url_decode(public_key)
    assert len(point) == 65 and point[0] == 4  # uncompressed P-256, as browsers want it
    assert "=" not in private_key + public_key


def test_pem_and_der_keys_are_accepted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    formats = (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL)
    for private_format in formats:
        pem = key.private_bytes(
            serialization.Encoding.PEM, private_format, serialization.NoEncryption()
        ).decode()
        assert public_key_b64url(load_vapid_private_key(pem)) == public_key_b64url(key)
        escaped = pem.strip().replace("\n", "\\n")  # one line in an env file
        assert public_key_b64url(load_vapid_private_key(escaped)) == public_key_b64url(key)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert public_key_b64url(load_vapid_private_key(b64url(der))) == public_key_b64url(key)


@pytest.mark.parametrize("text", ["not-a-key", "AAAA", "-----BEGIN PRIVATE KEY-----\nxx\n-----END"])
def test_unreadable_keys_are_refused(text: str) -> None:
    with pytest.raises(VapidKeyError):
        load_vapid_private_key(text)


def test_keys_on_other_curves_are_refused() -> None:
    pem = (
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(VapidKeyError):
        load_vapid_private_key(pem)


def test_public_key_endpoint(client: Client, vapid_keys: VapidKeys) -> None:
    response = client.get("/api/push/vapid-public-key")
    assert response.status_code == 200
    assert response.json() == {"publicKey": vapid_keys.public_key}


def test_public_key_endpoint_without_web_push(client: Client, settings: SettingsWrapper) -> None:
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    response = client.get("/api/push/vapid-public-key")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert response.json()["message"]


def test_public_key_endpoint_with_a_broken_key(client: Client, settings: SettingsWrapper) -> None:
    settings.WEBPUSH_VAPID_PRIVATE_KEY = "AAAA"
    assert client.get("/api/push/vapid-public-key").status_code == 404


def test_public_key_endpoint_is_read_only(client: Client, vapid_keys: VapidKeys) -> None:
    assert client.post("/api/push/vapid-public-key").status_code == 405
