"""WebSocket authentication: `?token=TOKEN`, else the Django session cookie."""

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings

from chat.tokens import live_token


class TokenAuthMiddleware(BaseMiddleware):
    """Puts the token's user in scope["user"]; without a token the session decides.

    The token's id goes in scope["token_id"]: revoking that token closes this connection
    (chat.revocation).
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tokens = query.get("token")
        if tokens:
            row = await database_sync_to_async(live_token)(tokens[0])
            scope = dict(scope)
            # A token that does not check out is refused, even beside a valid session.
            scope["user"] = row.user if row is not None else _anonymous()
            scope["auth"] = "token"
            scope["token_id"] = row.pk if row is not None else None
        return await super().__call__(scope, receive, send)


def _anonymous() -> Any:
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


def ChatAuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802 - named like channels' stacks
    # The session stack runs first; the token middleware overrides its user when given one.
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))


class BrowserOriginValidator(OriginValidator):
    """Checks Origin against ALLOWED_HOSTS when there is one.

    Browsers always send Origin, and it is what stops another site from riding a user's
    session cookie. Native and script clients send none and authenticate with a token, so a
    missing Origin is allowed (channels' own validator refuses it).
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return bool(super().valid_origin(parsed_origin))


def origin_checked(inner: Any) -> BrowserOriginValidator:
    allowed = settings.ALLOWED_HOSTS or (
        ["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
    )
    return BrowserOriginValidator(inner, allowed)
