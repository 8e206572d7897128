"""Fixtures of the push doubles and the keys they check, for any app's tests.

Loaded for the whole test run by the root conftest.py (`pytest_plugins`), so tests anywhere can
ask for `vapid_keys`, `webpush_service`, `webpush_https_service` or `apns_service`.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from notifications.tests.doubles.apns import (
    ApnsCredentials,
    ApnsService,
    TlsFiles,
    make_tls_files,
    server_ssl_context,
)
from notifications.tests.doubles.webpush import WebPushService
from notifications.vapid import load_vapid_private_key, public_key_b64url, vapid_key_pair_generate


@dataclass(frozen=True)
class VapidKeys:
    private_key: str  # as WEBPUSH_VAPID_PRIVATE_KEY takes it
    public_key: str  # the applicationServerKey


@pytest.fixture
def vapid_keys(settings: SettingsWrapper) -> VapidKeys:
    """A fresh VAPID key pair, configured as this server's (WEBPUSH_VAPID_PRIVATE_KEY).

    A worker in a subprocess gets it as `WEBPUSH_VAPID_PRIVATE_KEY=vapid_keys.private_key`.
    """
    private_key, public_key = vapid_key_pair_generate()
    settings.WEBPUSH_VAPID_PRIVATE_KEY = private_key
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:push-tests@example.com"
    assert public_key_b64url(load_vapid_private_key(private_key)) == public_key
    return VapidKeys(private_key, public_key)


@pytest.fixture
def webpush_service(vapid_keys: VapidKeys) -> Iterator[WebPushService]:
    """A Web Push service on 127.0.0.1 that accepts only this server's VAPID key."""
    with WebPushService(vapid_public_key=vapid_keys.public_key) as service:
        yield service
    assert not service.rejections, service.rejections


@pytest.fixture
def webpush_https_service(
    vapid_keys: VapidKeys, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WebPushService]:
    """The Web Push double over HTTPS, trusted through SSL_CERT_FILE by backends made after.

    Its endpoints are https URLs, as `POST /api/devices` requires of subscriptions.
    """
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_cert))
    service = WebPushService(
        vapid_public_key=vapid_keys.public_key, ssl_context=server_ssl_context(tls_files)
    )
    with service:
        yield service
    assert not service.rejections, service.rejections


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def apns_service(
    tls_files: TlsFiles,
    settings: SettingsWrapper,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApnsService]:
    """An APNs double over HTTP/2 and TLS, with ApnsBackend pointed at it and trusting it.

    The client trusts the double's certificate the way production would trust a private CA:
    through SSL_CERT_FILE, which OpenSSL reads when the backend makes its TLS context.
    `apns_service.environment()` does the same for a worker in a subprocess.
    """
    credentials = ApnsCredentials.generate(tmp_path_factory.mktemp("apns"))
    with ApnsService(tls_files, credentials) as service:
        environment = service.environment()
        monkeypatch.setenv("SSL_CERT_FILE", environment["SSL_CERT_FILE"])
        settings.APNS_KEY_FILE = environment["APNS_KEY_FILE"]
        settings.APNS_KEY_ID = environment["APNS_KEY_ID"]
        settings.APNS_TEAM_ID = environment["APNS_TEAM_ID"]
        settings.APNS_TOPIC = environment["APNS_TOPIC"]
        settings.APNS_USE_SANDBOX = True
        settings.APNS_HOST = environment["APNS_HOST"]
        settings.APNS_PORT = service.port
        yield service
    assert not service.rejections, service.rejections
