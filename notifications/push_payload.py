"""Payloads that fit the push services' size limits, by shortening the message text.

Web Push services must take 4096 bytes of encrypted payload (RFC 8030 §7.2), which aes128gcm
leaves 3993 bytes of JSON; APNs takes 4096 bytes of JSON. A chat message may be 4000
characters, so a push of a long one would be refused (413) for good: instead its text is cut,
on a character boundary, with an ellipsis, until the encoded payload fits.
"""

import json
from collections.abc import Callable
from typing import Any

ELLIPSIS = "…"


def compact_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def shorten_to_fit(
    payload: dict[str, Any], *, max_bytes: int, size: Callable[[dict[str, Any]], int]
) -> dict[str, Any]:
    """`payload`, or a copy with the longest "body" prefix (plus "…") for which it fits.

    A binary search over the prefix length, since JSON escaping makes a character cost 1 to 12
    bytes; it runs only for the rare payload that is too large.
    """
    body = payload.get("body")
    if not isinstance(body, str) or size(payload) <= max_bytes:
        return payload
    shortest, longest = 0, len(body) - 1  # characters kept; `shortest` always fits or is 0
    while shortest < longest:
        middle = (shortest + longest + 1) // 2
        if size({**payload, "body": body[:middle] + ELLIPSIS}) <= max_bytes:
            shortest = middle
        else:
            longest = middle - 1
    return {**payload, "body": body[:shortest] + ELLIPSIS if shortest else ""}
