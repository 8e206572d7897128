"""Test set-up shared by every app: a real Redis, isolated by key prefix per test session."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings


def pytest_configure(config: pytest.Config) -> None:
    # One prefix per run: keys and pub/sub channels of parallel runs (or of a developer's
    # `make run` on the same Redis) never meet.
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings.REDIS_KEY_PREFIX = prefix
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{prefix}:layer"  # type: ignore[index]
    settings.CACHES["default"]["KEY_PREFIX"] = f"{prefix}:cache"
    # Tests send bursts far beyond a human's pace; the limiter has its own tests.
    settings.CHAT_RATE_LIMIT_MESSAGES = 0
    # Consumers' ORM threads would otherwise hold PostgreSQL connections past the test
    # database's teardown.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        # A file, as in production, not Django's shared-cache memory database: receiver lanes
        # read while the ORM thread writes, and shared cache answers that with "table is
        # locked" at once where a WAL file lets both proceed.
        run_dir = Path(settings.BASE_DIR) / ".run"
        run_dir.mkdir(exist_ok=True)
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(
            run_dir / f"{prefix}.sqlite3"
        )
    # Pages rendered in the test process name their files as in development: the hashed names
    # need a `collectstatic` (the production path has its own tests, on a server process).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # Real hashing costs ~0.3 s a user; tests create hundreds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with no keys of this run's prefix, but the Redis watches' sentinels.

    A server process that outlives the test (the browser tests' daphne) keeps its sentinel
    there; wiping it would tell that server Redis was emptied and make it resync mid-test.
    """
    from chat.tests.helpers import PATIENCE_S
    from chatproject import lanes
    from chatproject.redis_client import redis_connection
    from chatproject.redis_watch import sentinel_key_pattern

    yield
    # Let events of this test finish before its database and keys go away.
    assert lanes.flush(PATIENCE_S), "receiver lanes did not drain"
    redis = redis_connection()
    sentinels = set(redis.scan_iter(match=sentinel_key_pattern(), count=1000))
    keys = [
        key
        for key in redis.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*", count=1000)
        if key not in sentinels
    ]
    for start in range(0, len(keys), 500):
        redis.delete(*keys[start : start + 500])


@pytest.fixture(scope="session", autouse=True)
def _close_leftover_database_connections(django_db_setup: None) -> Iterator[None]:
    """Close database connections still open in other threads before the test database goes.

    channels' `database_sync_to_async` closes old connections outside the context the call ran
    in (asgiref runs the function under `contextvars.Context.run`), so a connection the ORM
    thread opened for a consumer can outlive every test and block PostgreSQL's DROP DATABASE
    ("being accessed by other users"). Its thread is idle by now: closing it here is safe.
    """
    yield
    import gc
    import threading
    import weakref

    from django.db.backends.base.base import BaseDatabaseWrapper

    main = threading.main_thread().ident
    # A dead weakref.proxy raises ReferenceError on isinstance(): skip proxies by their type.
    proxies = (weakref.ProxyType, weakref.CallableProxyType)
    for wrapper in gc.get_objects():
        if (
            type(wrapper) not in proxies
            and isinstance(wrapper, BaseDatabaseWrapper)
            and wrapper.connection is not None
            and getattr(wrapper, "_thread_ident", main) != main
        ):
            wrapper.inc_thread_sharing()
            try:
                wrapper.close()
            finally:
                wrapper.dec_thread_sharing()


def pytest_unconfigure(config: pytest.Config) -> None:
    # Django removes the test database file but not SQLite's WAL companions.
    prefix = settings.REDIS_KEY_PREFIX
    for leftover in (Path(settings.BASE_DIR) / ".run").glob(f"{prefix}.sqlite3*"):
        leftover.unlink(missing_ok=True)


# The push doubles' fixtures (vapid_keys, webpush_service, apns_service, ...), for every app.
pytest_plugins = ["notifications.tests.doubles.fixtures"]
