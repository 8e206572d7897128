"""Settings of the notifications app, overridable in Django settings under their full names."""

from django.conf import settings


class _NotificationsSettings:
    @property
    def PUSH_BACKEND(self) -> str:  # noqa: N802
        return str(
            getattr(
                settings, "NOTIFICATIONS_PUSH_BACKEND", "notifications.backends.LoggingPushBackend"
            )
        )

    @property
    def PUSH_DELAY_SECONDS(self) -> float:  # noqa: N802
        """Extra wait in every push (DelayedLoggingPushBackend): the slow push of the benchmarks."""
        return float(getattr(settings, "NOTIFICATIONS_PUSH_DELAY_SECONDS", 0.5))

    @property
    def WORKER_CONCURRENCY(self) -> int:  # noqa: N802
        """Push jobs in flight at once per worker: bounds memory and the backend's load."""
        return int(getattr(settings, "NOTIFICATIONS_WORKER_CONCURRENCY", 200))

    @property
    def PUSH_TIMEOUT_SECONDS(self) -> float:  # noqa: N802
        return float(getattr(settings, "NOTIFICATIONS_PUSH_TIMEOUT_SECONDS", 10))


app_settings = _NotificationsSettings()
