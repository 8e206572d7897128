"""The JSON API's plumbing: errors as `{"error", "message"}`, bodies, methods and authentication.

Every `/api` view is wrapped by `json_api`. Clients authenticate with `Authorization: Bearer
TOKEN`; browsers may use their session instead. Bearer requests need no CSRF token (a browser
never adds that header by itself, so another site cannot forge one), which is why the views are
csrf_exempt; session requests still get Django's CSRF check, run here by hand.
"""

import functools
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from chat.app_settings import app_settings
from chat.errors import BadRequest, ChatError, TooLarge
from chat.tokens import user_for_token

View = Callable[..., HttpResponse]

_BEARER = "bearer "


def json_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def unauthorized(message: str) -> JsonResponse:
    response = json_error("unauthorized", message, 401)
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object body, or BadRequest."""
    raw = _body_within_limit(request)
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    return payload


def string_field(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string")
    return value


def positive_int_param(request: HttpRequest, name: str) -> int | None:
    """A query parameter that must be a positive integer in plain digits, or None if absent.

    Signs, spaces, decimals and zero are refused (BadRequest); size is the caller's business.
    """
    raw = request.GET.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(f"{name} must be a positive integer")
    try:
        value = int(raw)
    except ValueError:  # more digits than Python converts
        raise BadRequest(f"{name} is out of range") from None
    if value <= 0:
        raise BadRequest(f"{name} must be a positive integer")
    return value


def _body_within_limit(request: HttpRequest) -> bytes:
    # The same bound as a WebSocket frame. Read at most one byte past it, so a client that
    # sends no Content-Length cannot make us hold an arbitrarily large body in memory.
    limit = app_settings.MAX_FRAME_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise BadRequest("invalid Content-Length") from None
    if declared > limit:
        raise TooLarge(f"the body is over {limit} bytes")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"the body is over {limit} bytes")
    return raw


def _authenticate(request: HttpRequest) -> tuple[AbstractBaseUser | None, bool]:
    """(user or None, whether a Bearer token was presented)."""
    header = request.headers.get("Authorization", "")
    if header:
        if not header.lower().startswith(_BEARER):
            return None, True
        # A token that does not check out is refused, even beside a valid session (as on
        # the WebSocket): the client meant to be that token's user.
        return user_for_token(header[len(_BEARER) :].strip()), True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user, False
    return None, False


def _csrf_failure(request: HttpRequest) -> JsonResponse | None:
    # Django's own check, as CsrfViewMiddleware would have run it without csrf_exempt. The
    # middleware has already put the CSRF cookie's secret in request.META.
    # The callback is only looked at for a csrf_exempt mark, which this one lacks.
    refused = CsrfViewMiddleware(_unused_view).process_view(request, _unused_view, (), {})
    if refused is None:
        return None
    return json_error("csrf_failed", "CSRF check failed: send the X-CSRFToken header", 403)


def _unused_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=500)


def json_api(*, methods: tuple[str, ...], authenticated: bool = True) -> Callable[[View], View]:
    """Wrap a view of the JSON API: method check, authentication, CSRF, ChatError → JSON.

    An authenticated view is called as `view(request, user, **url_kwargs)`, with the token's
    or the session's user.
    """
    allowed = set(methods)

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                response = json_error(
                    "method_not_allowed", f"{request.method} is not allowed here", 405
                )
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            if authenticated:
                user, by_token = _authenticate(request)
                if user is None:
                    return unauthorized("a valid Bearer token or a logged-in session is required")
                if not by_token:
                    refused = _csrf_failure(request)
                    if refused is not None:
                        return refused
                args = (user, *args)
            try:
                return view(request, *args, **kwargs)
            except ChatError as error:
                return json_error(error.code, error.message, error.http_status)

        return wrapper

    return decorate
