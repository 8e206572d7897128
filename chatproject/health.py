"""Reports that apps add to GET /healthz, beside chat's own database and Redis checks.

An app registers a function in its AppConfig.ready(); /healthz calls each and shows what it
returns under the name given. Reports inform (a push worker that stopped beating is worth
seeing) but do not change the status code: that stays about whether this process can serve.
"""

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_reports: dict[str, Callable[[], Any]] = {}


def register(name: str, report: Callable[[], Any]) -> None:
    _reports[name] = report


def reports() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, report in _reports.items():
        try:
            out[name] = report()
        except Exception:
            logger.warning("health report %s failed", name, exc_info=True)
            out[name] = "down"
    return out
