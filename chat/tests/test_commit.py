"""After-commit calls (chatproject.commit): one that fails never breaks the committed change."""

import logging

import pytest
from django.db import transaction

from chatproject.commit import on_commit_robust

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failing_after_commit_call_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    def fails(what: str, *, why: str) -> None:
        raise RuntimeError(f"{what}: {why}")

    with caplog.at_level(logging.ERROR), transaction.atomic():
        on_commit_robust(fails, "resync", why="the message vanished")
        on_commit_robust(ran.append, "publish")

    assert ran == ["publish"]
    assert "fails" in caplog.text and "the message vanished" in caplog.text
