"""API tokens: opaque strings shown once, stored as SHA-256, expiring and revocable."""

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from chat.app_settings import app_settings
from chat.errors import InvalidCredentials
from chat.models import AuthToken


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_create(*, username: str, password: str) -> tuple[str, AbstractBaseUser]:
    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        raise InvalidCredentials("unknown user or wrong password")
    token = secrets.token_urlsafe(32)
    AuthToken.objects.create(
        user=user,
        key_hash=_digest(token),
        expires_at=timezone.now() + timedelta(seconds=app_settings.TOKEN_TTL_SECONDS),
    )
    return token, user


def live_token(token: str) -> AuthToken | None:
    """The live token row (its user loaded and active), or None (unknown, expired, revoked)."""
    if not token or len(token) > 200:
        return None
    row = (
        AuthToken.objects.filter(
            key_hash=_digest(token), revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .select_related("user")
        .first()
    )
    if row is None or not row.user.is_active:
        return None
    return row


def user_for_token(token: str) -> AbstractBaseUser | None:
    """The active user behind a live token, or None (unknown, expired, revoked)."""
    row = live_token(token)
    if row is None:
        return None
    user: AbstractBaseUser = row.user
    return user
