"""Web Push payload encryption: aes128gcm (RFC 8188) keyed as RFC 8291 says, on `cryptography`.

pywebpush (with http_ece) did the same per push, and more: a lookup of the OpenSSL backend, a
parse and check of the device's public key, a deep copy of the subscription and a few
case-insensitive header dicts: about a fifth of the worker's samples in a py-spy profile, as
much as the key agreement itself. Here a device's keys are parsed once (`receiver_keys`, cached
by their text) and a push costs one fresh key pair, one ECDH, four HMAC-SHA-256 and one
AES-GCM. The local
Web Push double decrypts every push with http_ece, so the two implementations are checked
against each other by every push test.
"""

import base64
import hmac
import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# One record holds any payload a push service takes (4,096 bytes, RFC 8030 §7.2).
RECORD_SIZE = 4096
_CURVE = ec.SECP256R1()


@dataclass(frozen=True)
class ReceiverKeys:
    """A subscription's keys, parsed: the user agent's P-256 public key and auth secret."""

    public_key: ec.EllipticCurvePublicKey
    public_bytes: bytes  # uncompressed point, 65 bytes
    auth_secret: bytes  # 16 bytes


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=50_000)
def receiver_keys(p256dh: str, auth: str) -> ReceiverKeys:
    """Parse (once per subscription) and check a subscription's keys; ValueError if unusable."""
    public_bytes = _b64url_decode(p256dh)
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, public_bytes)
    auth_secret = _b64url_decode(auth)
    if len(auth_secret) != 16:
        raise ValueError(f"the auth secret has {len(auth_secret)} bytes, not 16")
    return ReceiverKeys(public_key, public_bytes, auth_secret)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def encrypt(plaintext: bytes, receiver: ReceiverKeys) -> bytes:
    """The aes128gcm body of one push: a fresh sender key pair and salt every time."""
    sender = ec.generate_private_key(_CURVE)
    sender_public = sender.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    shared = sender.exchange(ec.ECDH(), receiver.public_key)
    # RFC 8291 §3.3: the shared secret mixed with the auth secret (HKDF, one block of SHA-256).
    prk_key = _hmac(receiver.auth_secret, shared)
    key_info = b"WebPush: info\x00" + receiver.public_bytes + sender_public
    ikm = _hmac(prk_key, key_info + b"\x01")
    # RFC 8188 §2.2-2.3: the content encryption key and nonce from the salt.
    salt = os.urandom(16)
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = _hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    # One record, the last: the payload, the delimiter 0x02, no padding.
    ciphertext = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)
    header = salt + RECORD_SIZE.to_bytes(4, "big") + bytes([len(sender_public)]) + sender_public
    return header + ciphertext
