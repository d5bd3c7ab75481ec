"""Messages and stored values from Redis that a replica refused: counted, and logged sparingly.

A forged or damaged message is dropped where it is read; the operator learns of it from the
metric ``acp_store_messages_rejected_total{kind, reason}`` and from one log line per kind at
most every ``LOG_INTERVAL`` seconds (a flood of forgeries must not become a flood of log lines).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

logger = logging.getLogger(__name__)

LOG_INTERVAL = 60.0
DETAIL_CHARS = 200
"""A rejection's log line quotes at most this much of what was wrong: never the whole message."""

MALFORMED = "malformed"
"""Not the shape, type, size or values a replica writes."""
UNAUTHENTICATED = "unauthenticated"
"""No valid HMAC under the replicas' shared secret."""
STALE = "stale"
"""Signed, but outside the freshness window (or from a future the clocks do not allow)."""
REPLAYED = "replayed"
"""Signed and fresh, but seen before."""
MISDIRECTED = "misdirected"
"""Genuine, but for another replica, or an answer to nothing this replica asked."""
REASONS = (MALFORMED, UNAUTHENTICATED, STALE, REPLAYED, MISDIRECTED)


class Rejections:
    def __init__(self, clock: Callable[[], float] = time.monotonic, interval: float = LOG_INTERVAL) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        """(kind, reason) -> how many were refused."""
        self._clock = clock
        self._interval = interval
        self._logged: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def reject(self, kind: str, reason: str, detail: str) -> None:
        """Count one refused ``kind`` of message (a channel's message, a stored value)."""
        self.counts[(kind, reason)] += 1
        now = self._clock()
        last = self._logged.get(kind)
        if last is not None and now - last < self._interval:
            self._unlogged[kind] += 1
            return
        self._logged[kind] = now
        unlogged = self._unlogged.pop(kind, 0)
        logger.warning(
            "ignored %s from the shared store (%s): %s%s",
            kind,
            reason,
            detail[:DETAIL_CHARS],
            f" ({unlogged} more ignored since the last notice)" if unlogged else "",
        )

    def total(self, kind: str | None = None) -> int:
        return sum(count for (counted, _), count in self.counts.items() if kind in (None, counted))
