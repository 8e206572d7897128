"""Closing the WebSocket connections a revoked credential opened, on every server process.

A connection is authenticated once, at its handshake. Revoking its token, deactivating or
deleting its user, or logging out its session must close it too, wherever it lives. Every
connection is in its user's group (`user.{id}`) on the channel layer, which is Redis pub/sub
that every server process subscribes to, so one publish reaches all of them; each consumer
closes itself with code 4003 (`chat.events.CLOSE_REVOKED`) when the event names the
credential it authenticated with (`scope["token_id"]`, its session key, or "all").

Closes are published after commit: a revocation that rolls back closes nothing. The publish
is not a guarantee on its own (pub/sub drops what is sent while Redis is unreachable), but
the credential is dead in the database, so the client cannot come back with it.

The receivers in chat/receivers.py call this for changes made anywhere (admin, shell): an
inactive user saved, a user, token or session row deleted, a token saved revoked, a logout.
What fires no signal cannot close anything: `QuerySet.update(is_active=False)` and raw SQL.
Deactivate with `user_deactivate` (or a model `save()`), revoke with `token_revoke`.
"""

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from chat.events import CloseConnections, close_connections, user_group
from chat.models import AuthToken
from chatproject import fanout
from chatproject.commit import on_commit_robust


def token_revoke(*, token_ids: Iterable[int]) -> int:
    """Revoke these tokens and close the connections they opened; returns how many were live.

    Tokens revoked earlier (even by a raw update) get their connections closed again: closing
    is idempotent and cheap.
    """
    with transaction.atomic():
        tokens = list(AuthToken.objects.filter(pk__in=list(token_ids)).values_list("pk", "user_id"))
        revoked = AuthToken.objects.filter(
            pk__in=[pk for pk, _ in tokens], revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        by_user: dict[int, list[int]] = defaultdict(list)
        for token_id, user_id in tokens:
            by_user[user_id].append(token_id)
        close_on_commit(
            [(user_id, close_connections(token_ids=ids)) for user_id, ids in by_user.items()]
        )
    return revoked


def user_deactivate(*, user_ids: Iterable[int]) -> int:
    """Deactivate users and close all their connections; returns how many were active."""
    user_ids = list(user_ids)
    with transaction.atomic():
        changed = (
            get_user_model().objects.filter(pk__in=user_ids, is_active=True).update(is_active=False)
        )
        close_all_on_commit(user_ids)
    return changed


def close_all_on_commit(user_ids: Iterable[int]) -> None:
    close_on_commit([(user_id, close_connections(everything=True)) for user_id in user_ids])


def close_on_commit(closes: list[tuple[int, CloseConnections]]) -> None:
    """Publish (user id, close event) pairs to the users' groups once the transaction commits."""
    sends = [(user_group(user_id), cast(dict[str, Any], event)) for user_id, event in closes]
    if sends:
        on_commit_robust(fanout.publish, sends)


def still_authorized(*, user_id: int, token_id: int | None) -> bool:
    """Whether a connection's credential is still good (checked once after it joins its group,
    so a revocation racing with the handshake cannot slip between the two)."""
    if token_id is not None:
        return AuthToken.objects.filter(
            pk=token_id,
            user_id=user_id,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            user__is_active=True,
        ).exists()
    return get_user_model().objects.filter(pk=user_id, is_active=True).exists()
