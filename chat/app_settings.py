"""Settings of the chat app: each can be overridden in Django settings under its full name.

Read on every access (not at import) so tests can change them with `override_settings`.
"""

from django.conf import settings
from django.db import connections


class _ChatSettings:
    def _int(self, name: str, default: int) -> int:
        return int(getattr(settings, f"CHAT_{name}", default))

    @property
    def MAX_MESSAGE_LENGTH(self) -> int:  # noqa: N802
        return self._int("MAX_MESSAGE_LENGTH", 4000)

    @property
    def MAX_FRAME_BYTES(self) -> int:  # noqa: N802
        return self._int("MAX_FRAME_BYTES", 64 * 1024)

    @property
    def RATE_LIMIT_MESSAGES(self) -> int:  # noqa: N802
        """New messages one user may send per window; 0 turns the limit off."""
        return self._int("RATE_LIMIT_MESSAGES", 30)

    @property
    def RATE_LIMIT_WINDOW_SECONDS(self) -> int:  # noqa: N802
        return self._int("RATE_LIMIT_WINDOW_SECONDS", 10)

    @property
    def SIGNIN_FAILURE_LIMIT(self) -> int:  # noqa: N802
        """Failed sign-ins one (username, address) may make per window before it is refused."""
        return self._int("SIGNIN_FAILURE_LIMIT", 10)

    @property
    def SIGNIN_WINDOW_SECONDS(self) -> int:  # noqa: N802
        return self._int("SIGNIN_WINDOW_SECONDS", 300)

    @property
    def TOKEN_TTL_SECONDS(self) -> int:  # noqa: N802
        return self._int("TOKEN_TTL_SECONDS", 24 * 3600)

    @property
    def PRESENCE_TTL_SECONDS(self) -> int:  # noqa: N802
        """A viewing connection that stops refreshing (its process died) expires after this."""
        return self._int("PRESENCE_TTL_SECONDS", 90)

    @property
    def REDIS_WATCH_SECONDS(self) -> float:  # noqa: N802
        """How often each server process checks Redis to resync connections when it returns."""
        return float(getattr(settings, "CHAT_REDIS_WATCH_SECONDS", 0.5))

    @property
    def SEND_CONCURRENTLY(self) -> bool:  # noqa: N802
        """Save sent messages on a pool of threads, each with its own database connection,
        rather than in the one thread all of a process's consumers share. Off on SQLite, which
        takes one writer at a time (and whose in-memory test databases are per connection)."""
        default = connections["default"].vendor != "sqlite"
        return bool(getattr(settings, "CHAT_SEND_CONCURRENTLY", default))

    @property
    def UNREAD_COUNTS(self) -> str:  # noqa: N802
        """Dotted path of the unread-count provider (see chat.unread)."""
        return str(getattr(settings, "CHAT_UNREAD_COUNTS", "badges.provider.RedisUnreadCounts"))


app_settings = _ChatSettings()
