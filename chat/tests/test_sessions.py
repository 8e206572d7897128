"""Sessions live in the cache (django-redis) in front of the database: a copy, so a cache
that cannot be reached costs a signed-in browser nothing."""

import copy

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings

from chat.tests.helpers import make_user
from chat.tests.processes import free_port
from chatproject.redis_client import redis_connection

pytestmark = pytest.mark.django_db


def test_a_session_is_cached_and_read_back(client: Client) -> None:
    client.force_login(make_user("alice"))
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert cache.get(f"django.contrib.sessions.cached_db{session_key}") is not None
    assert client.get("/api/rooms").status_code == 200


def test_sessions_work_when_the_cache_is_unreachable(client: Client) -> None:
    # The counters' client is made once per process: made here, from the real settings.
    redis_connection().ping()
    unreachable = copy.deepcopy(settings.CACHES)
    unreachable["default"]["LOCATION"] = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CACHES=unreachable):
        client.force_login(make_user("alice"))
        assert client.get("/api/rooms").status_code == 200
        assert cache.get("anything", "missing") == "missing"  # misses, does not raise
