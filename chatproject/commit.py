"""After-commit calls that never break the request that committed."""

from collections.abc import Callable
from typing import Any

from django.db import transaction


def on_commit_robust(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call `func(*args, **kwargs)` once the current transaction commits; an error is logged, never
    raised into the caller (the change is committed by then).

    `transaction.on_commit(partial(...), robust=True)` falls short: when the call fails,
    Django 5.2 names it by `__qualname__` in its log line, which a `functools.partial` lacks,
    and the AttributeError escapes into the request (a 500 for a change already made).
    """

    def call() -> None:
        func(*args, **kwargs)

    call.__qualname__ = getattr(func, "__qualname__", repr(func))
    transaction.on_commit(call, robust=True)
