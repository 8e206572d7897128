"""Settings of the badges app, overridable in Django settings under their full names."""

from django.conf import settings


class _BadgesSettings:
    @property
    def MAX_TRACKED_UNREAD(self) -> int:  # noqa: N802
        """Unread ids kept per user and room; past it the oldest are only counted."""
        return int(getattr(settings, "BADGES_MAX_TRACKED_UNREAD", 1000))

    @property
    def RECONCILE_BATCH_SIZE(self) -> int:  # noqa: N802
        return int(getattr(settings, "BADGES_RECONCILE_BATCH_SIZE", 200))


app_settings = _BadgesSettings()
