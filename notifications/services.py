"""State changes of the notifications app: push devices."""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction

from chat.errors import BadRequest, NotFound
from notifications.models import Device

MAX_ENDPOINT_LENGTH = 2000  # Device.address
MAX_KEY_LENGTH = 200  # p256dh is 87 characters of base64url, auth 22
_APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_HTTPS_URL = URLValidator(schemes=["https"])


@dataclass(frozen=True)
class Registration:
    device: Device
    created: bool  # False when this user had already registered this address


def device_register(
    *, user_id: int, kind: str, address: str, keys: dict[str, str] | None = None
) -> Registration:
    """Register a push address for the user, once: a repeat returns the same device.

    An address already registered by another user moves to this one: it names one browser or
    phone, and whoever registered it last is who uses that device now, so the previous user
    must stop receiving pushes there (a shared computer, a phone that changed hands).
    Registering a device the push service had declared gone makes it active again.
    """
    address, keys = _validated(kind=kind, address=address, keys=keys)
    with transaction.atomic():
        device = Device.objects.select_for_update().filter(kind=kind, address=address).first()
        if device is None:
            # get_or_create, not create: a registration racing in since the read above wins.
            device, created = Device.objects.get_or_create(
                kind=kind, address=address, defaults={"user_id": user_id, "keys": keys}
            )
            if created:
                return Registration(device, created=True)
        new_for_user = device.user_id != user_id
        if new_for_user or device.keys != keys or not device.active:
            # A Web Push subscription renewed by the browser keeps its endpoint, not its keys.
            device.user_id = user_id
            device.keys = keys
            device.active = True
            device.deactivated_at = None
            device.save(update_fields=["user", "keys", "active", "deactivated_at"])
    return Registration(device, created=new_for_user)


def device_delete(*, user_id: int, device_id: int) -> None:
    """Remove one of the user's devices; someone else's is "not found", like an unknown one."""
    deleted, _ = Device.objects.filter(pk=device_id, user_id=user_id).delete()
    if not deleted:
        raise NotFound(f"device {device_id} does not exist")


def _validated(
    *, kind: str, address: str, keys: dict[str, str] | None
) -> tuple[str, dict[str, str]]:
    if kind == Device.Kind.WEBPUSH:
        return _webpush_endpoint(address), _webpush_keys(keys)
    if kind == Device.Kind.APNS:
        if keys:
            raise BadRequest("an APNs device has no keys")
        return _apns_token(address), {}
    raise BadRequest(f"kind must be one of {', '.join(Device.Kind.values)}")


def _webpush_endpoint(endpoint: Any) -> str:
    if not isinstance(endpoint, str) or not endpoint:
        raise BadRequest("subscription.endpoint must be a non-empty string")
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise BadRequest(f"subscription.endpoint is over {MAX_ENDPOINT_LENGTH} characters")
    try:
        _HTTPS_URL(endpoint)
    except ValidationError:
        raise BadRequest("subscription.endpoint must be an https URL") from None
    return endpoint


def _webpush_keys(keys: Any) -> dict[str, str]:
    if not isinstance(keys, dict):
        raise BadRequest("subscription.keys must be an object with p256dh and auth")
    checked = {}
    for name in ("p256dh", "auth"):
        value = keys.get(name)
        if (
            not isinstance(value, str)
            or len(value) > MAX_KEY_LENGTH
            or not _BASE64.fullmatch(value)
            or not _decodes(value)
        ):
            raise BadRequest(f"subscription.keys.{name} must be a base64url string")
        checked[name] = value
    return checked


def _decodes(value: str) -> bool:
    # Browsers send base64url without padding; some libraries send standard base64.
    normalized = value.rstrip("=").replace("+", "-").replace("/", "_")
    try:
        base64.urlsafe_b64decode(normalized + "=" * (-len(normalized) % 4))
    except (binascii.Error, ValueError):
        return False
    return True


def _apns_token(token: Any) -> str:
    if not isinstance(token, str) or not _APNS_TOKEN.fullmatch(token):
        raise BadRequest("token must be 64 to 200 hexadecimal characters")
    # One device, one address: the same token in another case must not register twice.
    return token.lower()
