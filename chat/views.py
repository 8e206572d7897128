"""The HTTP side of chat (shared/PROTOCOL.md, "HTTP"): thin views over the same services as
the WebSocket, so a message sent here is checked, saved and announced exactly like one sent
there."""

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from chat import services
from chat.errors import BadRequest, InvalidCredentials
from chat.http import json_api, json_error, json_object, positive_int_param, string_field
from chat.selectors import (
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    iso_utc,
    messages_before,
    rooms_of,
)
from chat.signin import retry_after_header
from chat.signin_throttle import signin_failure_record, signin_lock_remaining
from chat.tokens import token_create
from chat.unread import room_badge, unread_counts
from chatproject import health
from chatproject.client_address import client_address
from chatproject.metrics_export import metrics_access, metrics_payload
from chatproject.redis_client import redis_connection

logger = logging.getLogger(__name__)


@json_api(methods=("POST",), authenticated=False)
def token_view(request: HttpRequest) -> HttpResponse:
    payload = json_object(request)
    username = string_field(payload, "username")
    password = string_field(payload, "password")
    # Throttled as the sign-in page is (chat.signin_throttle): refused before the password
    # is checked, a wrong one counted.
    address = client_address(request)
    retry_after = signin_lock_remaining(username=username, address=address)
    if retry_after is not None:
        response = json_error(
            "rate_limited", "too many failed sign-ins for this username from this address", 429
        )
        response["Retry-After"] = retry_after_header(retry_after)
        return response
    try:
        token, user = token_create(username=username, password=password)
    except InvalidCredentials:
        signin_failure_record(username=username, address=address)
        raise
    return JsonResponse({"token": token, "userId": user.pk})


@json_api(methods=("GET",))
def rooms_view(request: HttpRequest, user: AbstractBaseUser) -> HttpResponse:
    summaries = rooms_of(user.pk)
    counts = unread_counts().counts(user.pk, [room["id"] for room in summaries])
    rooms = [
        {
            "id": room["id"],
            "name": room["name"],
            "unreadCount": counts.rooms[room["id"]],
            "mentionCount": counts.mentions[room["id"]],
            "level": room["level"],
            "lastMessage": room["lastMessage"],
        }
        for room in summaries
    ]
    return JsonResponse(
        {
            "totalUnreadCount": counts.total,
            "totalMentionCount": counts.total_mentions,
            "rooms": rooms,
        }
    )


@json_api(methods=("GET", "POST"))
def room_messages_view(request: HttpRequest, user: AbstractBaseUser, room_id: int) -> HttpResponse:
    """GET pages through the room's history; POST sends a message (one URL, two verbs)."""
    if request.method == "GET":
        return _message_history(request, user, room_id)
    return _message_send(request, user, room_id)


def _message_history(request: HttpRequest, user: AbstractBaseUser, room_id: int) -> HttpResponse:
    before = positive_int_param(request, "before")
    limit = min(positive_int_param(request, "limit") or HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)
    page = messages_before(user_id=user.pk, room_id=room_id, before=before, limit=limit)
    return JsonResponse({"messages": page.messages, "hasMore": page.has_more})


def _message_send(request: HttpRequest, user: AbstractBaseUser, room_id: int) -> HttpResponse:
    payload = json_object(request)
    sent = services.message_send(
        sender_id=user.pk,
        room_id=room_id,
        body=payload.get("message"),  # type: ignore[arg-type]  # the service checks types
        client_message_id=payload.get("clientMessageId"),  # type: ignore[arg-type]
    )
    body: dict[str, Any] = {
        "messageId": sent.message.pk,
        "createdAt": iso_utc(sent.message.created_at),
    }
    return JsonResponse(body, status=201 if sent.created else 200)


@json_api(methods=("PATCH", "DELETE"))
def room_message_view(
    request: HttpRequest, user: AbstractBaseUser, room_id: int, message_id: int
) -> HttpResponse:
    """PATCH edits the message's text (its sender), DELETE deletes it (its sender or staff)."""
    if request.method == "PATCH":
        message = services.message_edit(
            user_id=user.pk,
            room_id=room_id,
            message_id=message_id,
            body=json_object(request).get("message"),  # type: ignore[arg-type]  # checked there
        )
        edited_at = iso_utc(message.edited_at) if message.edited_at else None
        return JsonResponse({"messageId": message.pk, "editedAt": edited_at})
    services.message_delete(
        user_id=user.pk,
        is_staff=bool(getattr(user, "is_staff", False)),
        room_id=room_id,
        message_id=message_id,
    )
    return HttpResponse(status=204)


@json_api(methods=("POST",))
def room_unread_view(request: HttpRequest, user: AbstractBaseUser, room_id: int) -> HttpResponse:
    payload = json_object(request)
    message_id = payload.get("messageId")
    if type(message_id) is not int:
        raise BadRequest('"messageId" must be an integer')
    services.room_mark_unread(user_id=user.pk, room_id=room_id, message_id=message_id)
    badge = room_badge(user.pk, room_id)
    return JsonResponse(
        {
            "roomId": room_id,
            "unreadCount": badge.room_count,
            "mentionCount": badge.room_mentions,
            "totalUnreadCount": badge.total,
            "totalMentionCount": badge.total_mentions,
        }
    )


@json_api(methods=("PUT",))
def room_notifications_view(
    request: HttpRequest, user: AbstractBaseUser, room_id: int
) -> HttpResponse:
    level = json_object(request).get("level")
    if not isinstance(level, str):
        raise BadRequest('"level" must be one of "all", "mentions", "none"')
    services.room_level_set(user_id=user.pk, room_id=room_id, level=level)
    return JsonResponse({"roomId": room_id, "level": level})


@json_api(methods=("DELETE",))
def room_membership_view(
    request: HttpRequest, user: AbstractBaseUser, room_id: int
) -> HttpResponse:
    services.membership_leave(user_id=user.pk, room_id=room_id)
    return HttpResponse(status=204)


@json_api(methods=("GET",), authenticated=False)
def healthz_view(request: HttpRequest) -> HttpResponse:
    checks = {"database": _check("database", _database_ok), "redis": _check("redis", _redis_ok)}
    healthy = all(state == "ok" for state in checks.values())
    # What other apps report (the push worker's heartbeat, say) informs; it sets no status.
    return JsonResponse({**health.reports(), **checks}, status=200 if healthy else 503)


def _check(name: str, probe: Callable[[], None]) -> str:
    try:
        probe()
    except Exception:  # any failure at all means "down"
        logger.warning("health check: %s is down", name, exc_info=True)
        return "down"
    return "ok"


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _redis_ok() -> None:
    redis_connection().ping()


@json_api(methods=("GET",), authenticated=False)
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Private (METRICS_TOKEN) and whole (every process): chatproject.metrics_export."""
    status = metrics_access(request.headers.get("Authorization", ""))
    if status == 404:
        return json_error("not_found", f"no API endpoint at {request.path}", 404)
    if status == 401:
        response = json_error("unauthorized", "Authorization: Bearer METRICS_TOKEN needed", 401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics_payload()
    return HttpResponse(body, content_type=content_type)


@csrf_exempt  # nothing to protect, and a 404 says more than a CSRF failure would
def api_not_found_view(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any /api/ address no endpoint matches (`/api/rooms/abc/messages`, a room id that is not
    a number): the contract's JSON error, not Django's HTML page."""
    return json_error("not_found", f"no API endpoint at {request.path}", 404)
