"""The production settings (docs/configuration-and-production.md): `check --deploy` is clean
with the documented environment, and a plain-HTTP run with DEBUG off keeps its cookies usable.

Each case starts a fresh interpreter, as settings are read from the environment at import.
"""

import json
import os
import secrets
import subprocess
import sys

from django.conf import settings

# The environment docs/configuration-and-production.md gives for TLS behind a reverse proxy.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "DJANGO_SECURE_PROXY": "1",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_HSTS_PRELOAD": "1",
}
_SHOWN = [
    "DEBUG",
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    # Settings only import: no Redis is reached by `check`, so any address will do.
    clean["REDIS_URL"] = settings.REDIS_URL
    clean["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
    clean.update(env)
    return subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _settings_under(**env: str) -> dict[str, object]:
    code = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {_SHOWN!r}}}))"
    )
    done = _run(["-c", code], **env)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_check_deploy_is_clean_with_the_documented_production_environment() -> None:
    done = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        **PRODUCTION_ENV,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_check_deploy_warns_without_it() -> None:
    # The same command fails where the environment is missing: the clean run is not a given.
    done = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_DEBUG="0",
    )
    assert done.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in done.stderr


def test_the_proxy_variables_turn_on_https_cookies_redirect_and_hsts() -> None:
    shown = _settings_under(**PRODUCTION_ENV)
    assert shown == {
        "DEBUG": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
    }


def test_plain_http_with_debug_off_keeps_cookies_usable_when_they_are_unset() -> None:
    shown = _settings_under(DJANGO_DEBUG="0")
    assert shown == {
        "DEBUG": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
    }
