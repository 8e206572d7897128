"""Settings of the notifications app, overridable in Django settings under their full names.

Read on every access (not at import) so tests can change them with `override_settings`.
"""

import os

from django.conf import settings

# Where the real protocol backends live; imported by path only when a kind is configured, so
# this app works before (and without) them.
WEBPUSH_BACKEND = "notifications.webpush.WebPushBackend"
APNS_BACKEND = "notifications.apns.ApnsBackend"
LOGGING_BACKEND = "notifications.backends.LoggingPushBackend"


def _configured(name: str) -> bool:
    return bool(getattr(settings, name, None) or os.environ.get(name))


class _NotificationsSettings:
    def _float(self, name: str, default: float) -> float:
        return float(getattr(settings, f"NOTIFICATIONS_{name}", default))

    def _int(self, name: str, default: int) -> int:
        return int(getattr(settings, f"NOTIFICATIONS_{name}", default))

    @property
    def PUSH_BACKENDS(self) -> dict[str, str]:  # noqa: N802
        """Device kind -> dotted path of its DeviceBackend class.

        NOTIFICATIONS_PUSH_BACKENDS wins; else NOTIFICATIONS_PUSH_BACKEND (one class for every
        kind: tests and the benchmark); else the real protocol for a kind whose keys are set
        (WEBPUSH_VAPID_PRIVATE_KEY, APNS_KEY_FILE) and the logging backend for the others.
        """
        mapping = getattr(settings, "NOTIFICATIONS_PUSH_BACKENDS", None)
        if mapping:
            return dict(mapping)
        single = getattr(settings, "NOTIFICATIONS_PUSH_BACKEND", None)
        if single:
            return {"webpush": str(single), "apns": str(single)}
        return {
            "webpush": WEBPUSH_BACKEND
            if _configured("WEBPUSH_VAPID_PRIVATE_KEY")
            else LOGGING_BACKEND,
            "apns": APNS_BACKEND if _configured("APNS_KEY_FILE") else LOGGING_BACKEND,
        }

    @property
    def GRACE_SECONDS(self) -> float:  # noqa: N802
        """How long a message's pushes wait, then re-check that it is still unread."""
        return float(getattr(settings, "PUSH_GRACE_SECONDS", 3.0))

    @property
    def PUSH_DELAY_SECONDS(self) -> float:  # noqa: N802
        """Extra wait in every push (DelayedLoggingPushBackend): the slow push of the benchmarks."""
        return self._float("PUSH_DELAY_SECONDS", 0.5)

    @property
    def WORKER_CONCURRENCY(self) -> int:  # noqa: N802
        """Pushes (and jobs) in flight at once per worker: bounds memory and the services' load."""
        return self._int("WORKER_CONCURRENCY", 200)

    @property
    def PUSH_TIMEOUT_SECONDS(self) -> float:  # noqa: N802
        """One request to a push service; past it the delivery is retried."""
        return self._float("PUSH_TIMEOUT_SECONDS", 10)

    @property
    def MAX_ATTEMPTS(self) -> int:  # noqa: N802
        """Tries per delivery; after the last failed one the delivery is marked failed."""
        return self._int("PUSH_MAX_ATTEMPTS", 5)

    @property
    def RETRY_BASE_SECONDS(self) -> float:  # noqa: N802
        """First retry after about this long, then doubling (with jitter)."""
        return self._float("PUSH_RETRY_BASE_SECONDS", 2.0)

    @property
    def RETRY_MAX_SECONDS(self) -> float:  # noqa: N802
        return self._float("PUSH_RETRY_MAX_SECONDS", 600.0)

    @property
    def BADGE_COALESCE_SECONDS(self) -> float:  # noqa: N802
        """Reads within this window after the first one send one silent badge update."""
        return self._float("BADGE_COALESCE_SECONDS", 1.0)

    @property
    def RELAY_POLL_SECONDS(self) -> float:  # noqa: N802
        """The outbox relay looks at least this often, nudged or not."""
        return self._float("RELAY_POLL_SECONDS", 1.0)

    @property
    def JOB_HEARTBEAT_SECONDS(self) -> int:  # noqa: N802
        """A running job silent this long belongs to a dead worker: the sweeper re-queues it."""
        return self._int("JOB_HEARTBEAT_SECONDS", 30)

    @property
    def SWEEP_SECONDS(self) -> int:  # noqa: N802
        """How often a worker looks for jobs of dead workers."""
        return self._int("SWEEP_SECONDS", 15)

    @property
    def STALE_CLAIM_SECONDS(self) -> float:  # noqa: N802
        """A delivery claimed this long ago with no answer recorded: its worker died mid-push."""
        return self._float("STALE_CLAIM_SECONDS", 600.0)

    @property
    def DELIVERY_RETENTION_DAYS(self) -> int:  # noqa: N802
        """prune_push_deliveries' default age."""
        return self._int("DELIVERY_RETENTION_DAYS", 30)


app_settings = _NotificationsSettings()
