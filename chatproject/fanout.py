"""Publishes frames to channel-layer groups from synchronous code.

Called by receivers on their lanes (and by the inline read receiver): one pipelined round trip
per 500 frames, failures logged and counted rather than raised, since frames are a copy (a
client that misses one resyncs from the snapshot) and must never break the receiver's caller.
"""

import logging
import time
from typing import Any

from channels.layers import get_channel_layer

from chatproject import hub
from chatproject.metrics import BADGE_LATENCY, FANOUT_FAILURES

logger = logging.getLogger(__name__)

# Bounded pipelines: a 10,000-member room becomes several round trips, not one enormous one.
# Through the hub a chunk is one PUBLISH per shard that every process decodes whole, so it
# can be larger: a 10,000-member room is one message of ~2 MB.
_CHUNK = 500
_HUB_CHUNK = 10_000

GroupSend = tuple[str, dict[str, Any]]


def publish(sends: list[GroupSend], *, committed_at: float | list[float] | None = None) -> None:
    """`committed_at`: when the message (or each message of a batch) was committed."""
    if not sends:
        return
    try:
        layer = get_channel_layer()
        chunk = _HUB_CHUNK if getattr(layer, "hub_active", lambda: False)() else _CHUNK
        for start in range(0, len(sends), chunk):
            layer.publish_to_groups(sends[start : start + chunk])
        _observe(committed_at)
    except Exception:
        FANOUT_FAILURES.inc()
        groups = sorted({group for group, _ in sends})
        logger.exception("could not publish %d frames to groups %s", len(sends), groups[:20])


def publish_built(
    name: str,
    shared: Any,
    rows: list[tuple[str, Any]],
    *,
    committed_at: float | list[float] | None = None,
) -> None:
    """Send each row's group the message the builder `name` (chatproject.hub.register_builder)
    makes of `shared` and the row's values: through the hub, `shared` travels once and each
    receiving process builds the messages of its own members."""
    if not rows:
        return
    try:
        layer = get_channel_layer()
        if not hasattr(layer, "publish_built"):  # another layer: build them all here
            build = hub.builder(name)
            sends = [(group, build(shared, values)) for group, values in rows]
            publish(sends, committed_at=committed_at)
            return
        chunk = _HUB_CHUNK if layer.hub_active() else _CHUNK
        for start in range(0, len(rows), chunk):
            layer.publish_built(name, shared, rows[start : start + chunk])
        _observe(committed_at)
    except Exception:
        FANOUT_FAILURES.inc()
        groups = sorted({group for group, _ in rows})
        logger.exception("could not publish %d %s messages to %s", len(rows), name, groups[:20])


def _observe(committed_at: float | list[float] | None) -> None:
    now = time.perf_counter()
    for committed in [committed_at] if isinstance(committed_at, float) else committed_at or []:
        BADGE_LATENCY.observe(now - committed)
