"""Long messages are shortened to fit the push services' 4 KB, on character boundaries."""

import pytest

from notifications.push_payload import ELLIPSIS, compact_json, shorten_to_fit


def size(payload: dict[str, object]) -> int:
    return len(compact_json(payload))


@pytest.mark.parametrize("character", ["a", "é", "🍜", '"', "\n", "\u0001"])
def test_long_bodies_are_cut_to_fit(character: str) -> None:
    payload = {"type": "chat-message", "roomId": 1, "title": "general", "body": character * 4000}
    shortened = shorten_to_fit(payload, max_bytes=1000, size=size)
    assert size(shortened) <= 1000
    assert shortened["body"].endswith(ELLIPSIS)
    assert shortened["body"][:-1] == character * (len(shortened["body"]) - 1)
    # Not cut more than needed: one more character would not fit.
    assert size({**shortened, "body": character + shortened["body"]}) > 1000 - 12
    assert payload["body"] == character * 4000  # the caller's payload is left alone


def test_payloads_that_fit_are_left_as_they_are() -> None:
    payload = {"type": "chat-message", "body": "short"}
    assert shorten_to_fit(payload, max_bytes=1000, size=size) is payload
    badge = {"type": "badge", "badge": 3}
    assert shorten_to_fit(badge, max_bytes=5, size=size) is badge  # no body to cut
