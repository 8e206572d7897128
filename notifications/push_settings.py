"""Settings of the push protocols (Web Push, APNs), read on every access so tests can override them.

Their names are unprefixed because they are also the environment variables of shared/PROTOCOL.md
("Configuration"); chatproject/settings.py reads the environment into them. Kept apart from
app_settings.py, which holds the worker's knobs: these only say how to reach a push service.
"""

from django.conf import settings


class _PushProtocolSettings:
    def _str(self, name: str, default: str = "") -> str:
        return str(getattr(settings, name, default) or default)

    @property
    def WEBPUSH_VAPID_PRIVATE_KEY(self) -> str:  # noqa: N802
        """PEM text, or the raw 32-byte key in base64url; empty: Web Push is off."""
        return self._str("WEBPUSH_VAPID_PRIVATE_KEY").strip()

    @property
    def WEBPUSH_VAPID_SUBJECT(self) -> str:  # noqa: N802
        return self._str("WEBPUSH_VAPID_SUBJECT", "mailto:admin@localhost")

    @property
    def WEBPUSH_MAX_CONNECTIONS(self) -> int:  # noqa: N802
        """Open connections of one backend: push services speak HTTP/1.1 here, one push each."""
        return int(getattr(settings, "WEBPUSH_MAX_CONNECTIONS", 1000))

    @property
    def APNS_KEY_FILE(self) -> str:  # noqa: N802
        return self._str("APNS_KEY_FILE")

    @property
    def APNS_KEY_ID(self) -> str:  # noqa: N802
        return self._str("APNS_KEY_ID")

    @property
    def APNS_TEAM_ID(self) -> str:  # noqa: N802
        return self._str("APNS_TEAM_ID")

    @property
    def APNS_TOPIC(self) -> str:  # noqa: N802
        """The app's bundle id."""
        return self._str("APNS_TOPIC")

    @property
    def APNS_USE_SANDBOX(self) -> bool:  # noqa: N802
        return bool(getattr(settings, "APNS_USE_SANDBOX", False))

    @property
    def APNS_HOST(self) -> str:  # noqa: N802
        """Overrides Apple's host (production or sandbox): a test double, a relay."""
        return self._str("APNS_HOST")

    @property
    def APNS_PORT(self) -> int:  # noqa: N802
        return int(getattr(settings, "APNS_PORT", 443))

    @property
    def APNS_MAX_CONNECTIONS(self) -> int:  # noqa: N802
        """HTTP/2 connections of one backend; each carries up to 1000 pushes at once."""
        return int(getattr(settings, "APNS_MAX_CONNECTIONS", 4))


push_settings = _PushProtocolSettings()
