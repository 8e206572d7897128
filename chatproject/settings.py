"""Settings, read from the environment (see shared/PROTOCOL.md, "Configuration").

With nothing set, the project runs on SQLite and an embedded Redis it starts itself, so a
newcomer's `make run` needs no services. Production sets DATABASE_URL and REDIS_URL.
"""

import os
from pathlib import Path

import dj_database_url

from chatproject.embedded_redis import redis_url_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# Operators' knobs (README "Settings operators tune"): each app reads its own setting with
# the default in its app_settings.py; the environment sets one only when it names it, so
# every default lives in one place.
_OPERATOR_SETTINGS: dict[str, type[int] | type[float]] = {
    "CHAT_RATE_LIMIT_MESSAGES": int,
    "CHAT_RATE_LIMIT_WINDOW_SECONDS": int,
    "CHAT_SIGNIN_FAILURE_LIMIT": int,
    "CHAT_SIGNIN_WINDOW_SECONDS": int,
    "CHAT_PRESENCE_TTL_SECONDS": int,
    "CHAT_TOKEN_TTL_SECONDS": int,
    "CHAT_REDIS_WATCH_SECONDS": float,
    "BADGES_MAX_TRACKED_UNREAD": int,
    "NOTIFICATIONS_WORKER_CONCURRENCY": int,
    "NOTIFICATIONS_PUSH_TIMEOUT_SECONDS": float,
}


def _operator_settings_from_env() -> dict[str, int | float]:
    return {
        name: cast(os.environ[name])
        for name, cast in _OPERATOR_SETTINGS.items()
        if os.environ.get(name, "").strip()
    }


globals().update(_operator_settings_from_env())


DEBUG = _env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "dev-only-insecure-key-set-DJANGO_SECRET_KEY"
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

# GET /metrics answers only `Authorization: Bearer <this>`; unset, it is public with DEBUG on
# and 404 with DEBUG off (chatproject/metrics_export.py).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# prometheus-client writes each process's figures into this directory from the first metric
# created, and a missing one fails every manage.py command with a bare FileNotFoundError (a
# fresh host, or /run emptied by a reboot): made here, before any metric exists.
if _multiproc_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_multiproc_dir, exist_ok=True)

# Reverse proxies in front that append the client's address to X-Forwarded-For; 0 (none):
# limits keyed by address use REMOTE_ADDR (chatproject/client_address.py).
TRUSTED_PROXY_COUNT = int(os.environ.get("DJANGO_TRUSTED_PROXY_COUNT") or 0)

# --- HTTPS behind a reverse proxy (docs/configuration-and-production.md) ---------------------
# All off by default, so a plain-HTTP run with DEBUG off (a laptop, the tests) keeps working:
# a secure-only cookie would never come back over http://, and a redirect would loop.
# The proxy terminates TLS and says so in X-Forwarded-Proto; trust that header only when a
# proxy is known to set it (and to overwrite a client's own).
if _env_bool("DJANGO_SECURE_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
_https = _env_bool("DJANGO_HTTPS", "SECURE_PROXY_SSL_HEADER" in globals())
SESSION_COOKIE_SECURE = _env_bool("DJANGO_SESSION_COOKIE_SECURE", _https)
CSRF_COOKIE_SECURE = _env_bool("DJANGO_CSRF_COOKIE_SECURE", _https)
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SSL_REDIRECT", _https)
# Probes and scrapers inside the network ask the server directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS") or 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _env_bool("DJANGO_HSTS_PRELOAD", False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
    "badges",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Consumers reach the ORM through database_sync_to_async, which closes connections
        # older than this: keeping them a minute saves a PostgreSQL handshake per frame.
        conn_max_age=int(os.environ.get("CONN_MAX_AGE") or 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at the
        # start of a transaction instead of failing with "database is locked" half-way.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Push protocols (notifications.webpush, notifications.apns; README "Web Push and APNs") --
# Unset keys turn a protocol off: its backend answers "failed" and the public-key endpoint 404.
WEBPUSH_VAPID_PRIVATE_KEY = os.environ.get("WEBPUSH_VAPID_PRIVATE_KEY", "")
WEBPUSH_VAPID_SUBJECT = os.environ.get("WEBPUSH_VAPID_SUBJECT") or "mailto:admin@localhost"
APNS_KEY_FILE = os.environ.get("APNS_KEY_FILE", "")
APNS_KEY_ID = os.environ.get("APNS_KEY_ID", "")
APNS_TEAM_ID = os.environ.get("APNS_TEAM_ID", "")
APNS_TOPIC = os.environ.get("APNS_TOPIC", "")
APNS_USE_SANDBOX = _env_bool("APNS_USE_SANDBOX", False)
# Another host than Apple's (a relay, or the tests' double for a worker in a subprocess).
APNS_HOST = os.environ.get("APNS_HOST", "")
APNS_PORT = int(os.environ.get("APNS_PORT") or 443)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# Where `collectstatic` writes and, with DEBUG off, where the server reads them from
# (chatproject/static_files.py): hashed names and compressed copies, whatever DEBUG is when
# it runs, so one collect serves both.
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "chatproject.static_files.HashedCompressedStorage"},
}
# The web page (chat/pages.py) signs in with Django's own views.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat-page"
LOGOUT_REDIRECT_URL = "login"

# How long after a message its pushes wait, then re-check that it is still unread (notifications).
PUSH_GRACE_SECONDS = float(os.environ.get("PUSH_GRACE_SECONDS") or 3)

# --- Redis: counters, presence, channel layer, rate limits and the push queue -------------
REDIS_URL = redis_url_from_environment()
# Every key this project writes starts with this, so tests and several deployments can share
# one Redis without touching each other's keys or pub/sub channels.
REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "chat")

# The one Redis configuration: django-redis' cache and the project's synchronous client
# (chatproject.redis_client, from django_redis.get_redis_connection) share this pool; the
# channel layer and the async clients (push worker, Redis watch) take the same URL.
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{REDIS_KEY_PREFIX}:cache",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            # Explicit, as redis-py 8 defaults to it: every command here answers in
            # milliseconds; nothing blocks on this pool (see README "Channel layer").
            "SOCKET_TIMEOUT": 5,
            "CONNECTION_POOL_KWARGS": {"health_check_interval": 30},
            # The cache is a copy: while Redis is away a cache call is a miss, not an error
            # (sessions fall back to the database). The counters' client raises as before.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
# Sessions (browsers, the admin) read from the cache and write through to the database.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# The pub/sub layer: ~0.2 ms per group send here against ~1.3 ms for the core (list) layer,
# and badges are a repairable copy of the database, so a frame lost while Redis is down is
# recovered by the client's snapshot on reconnect. See README "Channel layer".
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chatproject.channel_layer.PipelinedPubSubChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_connect_timeout": 2,
                    # redis-py 8 defaults to 5 s; publishes answer in well under a millisecond
                    # and the subscriber polls with its own short timeout.
                    "socket_timeout": 5,
                }
            ],
            "prefix": f"{REDIS_KEY_PREFIX}:layer",
        },
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # saq logs three lines per job (enqueuing, processing, finished): one push message.
        "saq": {"level": os.environ.get("SAQ_LOG_LEVEL", "WARNING")},
    },
}

# --- Back-pressure (README "Back-pressure"): bounds on what a slow client or a burst can hold -
# Frames (chat messages and other frames that cannot be coalesced) one connection may have
# waiting; the next one closes it with 4008.
CHAT_CONNECTION_QUEUE_LIMIT = int(os.environ.get("CHAT_CONNECTION_QUEUE_LIMIT", "200"))
# Bytes daphne may buffer for a client before its consumer stops forwarding (and coalesces).
CHAT_CONNECTION_WRITE_BUFFER_BYTES = int(
    os.environ.get("CHAT_CONNECTION_WRITE_BUFFER_BYTES", str(256 * 1024))
)
# A client over that buffer this long without reading it down is closed with 4008.
CHAT_SLOW_CONSUMER_SECONDS = float(os.environ.get("CHAT_SLOW_CONSUMER_SECONDS", "10"))
# Events one receiver lane may queue; past it a lane that can rebuild sheds (chatproject/lanes.py).
CHAT_LANE_LIMIT = int(os.environ.get("CHAT_LANE_LIMIT", "2000"))
# Queued events a lane hands to its receiver at once when a backlog forms.
CHAT_LANE_BATCH = int(os.environ.get("CHAT_LANE_BATCH", "200"))

# --- Fan-out (chatproject/hub.py, chatproject/outlet.py) ----------------------------------------
# On: one publish per event per Redis shard, decoded once per process and written straight to
# the clients that keep up. Off (0): one publish per group, each member's consumer forwards its
# copy (the bench's baseline). Every process of a deployment must agree.
CHAT_FANOUT_HUB = _env_bool("CHAT_FANOUT_HUB", True)
