"""Push tests run a real worker (relay + saq) in the test's event loop, against real Redis."""

from collections.abc import Iterator

import pytest
from django.test import override_settings

from chatproject.redis_client import redis_connection
from notifications import queue


@pytest.fixture(autouse=True)
def _push_settings() -> Iterator[None]:
    # Short waits so tests run in seconds; each test that cares sets its own.
    with override_settings(
        PUSH_GRACE_SECONDS=0.2,
        NOTIFICATIONS_BADGE_COALESCE_SECONDS=0.3,
        NOTIFICATIONS_RELAY_POLL_SECONDS=0.2,
        NOTIFICATIONS_PUSH_RETRY_BASE_SECONDS=0.05,
        NOTIFICATIONS_PUSH_TIMEOUT_SECONDS=5,
    ):
        yield


@pytest.fixture(autouse=True)
def _clean_saq_keys() -> Iterator[None]:
    """saq's keys start with `saq:`, not with the run's prefix: remove this run's after a test."""
    yield
    redis = redis_connection()
    name = queue.queue_name()
    for pattern in (f"saq:{name}:*", f"saq:job:{name}:*"):
        keys = list(redis.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            redis.delete(*keys[start : start + 500])
