"""Push devices and room mutes over HTTP (shared/PROTOCOL.md, "HTTP")."""

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse

from chat.errors import BadRequest
from chat.http import json_api, json_object
from chat.models import Level
from chat.services import room_level_set
from notifications import services
from notifications.models import Device


@json_api(methods=("POST",))
def device_register_view(request: HttpRequest, user: AbstractBaseUser) -> HttpResponse:
    kind, address, keys = _device_fields(json_object(request))
    registration = services.device_register(user_id=user.pk, kind=kind, address=address, keys=keys)
    return JsonResponse({"id": registration.device.pk}, status=201 if registration.created else 200)


@json_api(methods=("DELETE",))
def device_delete_view(
    request: HttpRequest, user: AbstractBaseUser, device_id: int
) -> HttpResponse:
    services.device_delete(user_id=user.pk, device_id=device_id)
    return HttpResponse(status=204)


@json_api(methods=("PUT",))
def room_mute_view(request: HttpRequest, user: AbstractBaseUser, room_id: int) -> HttpResponse:
    muted = json_object(request).get("muted")
    if not isinstance(muted, bool):
        raise BadRequest("muted must be true or false")
    # Mute is the notification level `none`, unmute `all` (shared/PROTOCOL.md, "Notification
    # level"): one setting, two ways to reach it.
    room_level_set(user_id=user.pk, room_id=room_id, level=Level.NONE if muted else Level.ALL)
    return JsonResponse({"roomId": room_id, "muted": muted})


def _device_fields(payload: dict[str, Any]) -> tuple[str, Any, Any]:
    """(kind, address, keys) from either shape of the body; the service checks the values."""
    kind = payload.get("kind")
    if kind == Device.Kind.WEBPUSH:
        subscription = payload.get("subscription")
        if not isinstance(subscription, dict):
            raise BadRequest("subscription must be an object with endpoint and keys")
        return kind, subscription.get("endpoint"), subscription.get("keys")
    if kind == Device.Kind.APNS:
        return kind, payload.get("token"), None
    raise BadRequest(f"kind must be one of {', '.join(Device.Kind.values)}")
