"""VAPID keys (RFC 8292): loading the configured one, making new ones, and serving the public half.

The private key signs the JWT that tells a push service this server is the one a browser
subscribed with; pages need the public key, as base64url of the uncompressed P-256 point, for
`PushManager.subscribe({applicationServerKey})`. WEBPUSH_VAPID_PRIVATE_KEY takes PEM text (what
most tools print; newlines may be escaped as `\\n`), the raw 32-byte private scalar in base64url
(what `generate_vapid_keys` prints, one line that fits an environment variable), or DER in base64.
"""

import base64
import binascii
import logging
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.http import HttpRequest, HttpResponse, JsonResponse

from chat.http import json_api, json_error
from notifications.push_settings import push_settings

logger = logging.getLogger(__name__)


class VapidKeyError(ValueError):
    """The configured VAPID key is not a P-256 private key in a form we read."""


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=4)
def load_vapid_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 key in `text`: PEM, the raw private scalar in base64url, or DER in base64."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            # PEM pasted into one environment line often comes with its newlines escaped.
            pem = text.replace("\\n", "\n").encode("ascii")
            key = serialization.load_pem_private_key(pem, password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:  # DER in base64, what py-vapid's from_string also takes
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError) as error:
        raise VapidKeyError(f"unreadable VAPID private key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VapidKeyError("a VAPID key must be an EC key on the P-256 curve")
    return key


def configured_vapid_key() -> ec.EllipticCurvePrivateKey | None:
    """The key of WEBPUSH_VAPID_PRIVATE_KEY, or None when Web Push is not configured."""
    text = push_settings.WEBPUSH_VAPID_PRIVATE_KEY
    return load_vapid_private_key(text) if text else None


def public_key_b64url(key: ec.EllipticCurvePrivateKey) -> str:
    """The applicationServerKey of pages: base64url of the uncompressed public point."""
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def private_key_b64url(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def vapid_key_pair_generate() -> tuple[str, str]:
    """A new (private, public) pair, both base64url: the private one for the setting."""
    key = ec.generate_private_key(ec.SECP256R1())
    return private_key_b64url(key), public_key_b64url(key)


@json_api(methods=("GET",), authenticated=False)
def vapid_public_key_view(request: HttpRequest) -> HttpResponse:
    # Public by nature (every subscribed browser holds it), so no authentication.
    try:
        key = configured_vapid_key()
    except VapidKeyError:
        # The push backend turns Web Push off for the same reason; pages should not subscribe.
        logger.exception("WEBPUSH_VAPID_PRIVATE_KEY is unusable")
        key = None
    if key is None:
        return json_error("not_found", "Web Push is not configured on this server", 404)
    return JsonResponse({"publicKey": public_key_b64url(key)})
