"""Live events for operators: a bounded history, and one queue per reader that never holds devices up.

Publishing is a plain call on the loop's thread that never waits: each reader has its own
pending events, keyed so that a newer event for the same device replaces the one the
reader has not read yet (a reader that falls behind gets each device's latest state once).
A reader that stays behind (too many pending, or an event left unread for too long) is dropped;
it reconnects with ``Last-Event-ID`` and resumes from the history, or is told to start over. A
quiet stream (nothing to send) is never behind: it stays open, with a comment now and then so
proxies do not take it for dead.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

HISTORY = 10_000
"""Events kept for readers that resume with Last-Event-ID."""

MAX_PENDING = 2_000
"""Events a reader may have waiting before it is dropped."""

MAX_UNREAD_SECONDS = 10.0
"""How long the oldest event a reader has not read may wait before the reader is dropped."""

KEEPALIVE_SECONDS = 15.0
"""Seconds of silence after which a quiet stream gets an SSE comment (proxies cut idle streams)."""


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: str
    key: str
    """Events with the same key coalesce in a reader's queue (one device's states, say)."""
    data: dict[str, Any]

    def encoded(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data)}\n\n".encode()


class Reader:
    """One connected reader's pending events, oldest first."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self.pending: OrderedDict[str, Event] = OrderedDict()
        self.unread_since: float | None = None
        """When the oldest event still waiting for this reader came (None: nothing waits). A newer
        event that replaces it keeps this time: the reader has been behind since then."""
        self.dropped = False
        self.closed = False
        self._wake = asyncio.Event()

    def put(self, event: Event, now: float) -> None:
        if not self.pending:
            self.unread_since = now
        self.pending.pop(event.key, None)
        self.pending[event.key] = event
        self._wake.set()

    def end(self, dropped: bool) -> None:
        self.dropped = self.dropped or dropped
        self.closed = True
        self.pending.clear()
        self.unread_since = None
        self._wake.set()

    def behind(self, now: float, max_unread: float) -> bool:
        """Judged by its oldest unread event, not by when it last read: a quiet reader is never behind."""
        return self.unread_since is not None and now - self.unread_since > max_unread

    async def stream(self, keepalive: float | None = None) -> AsyncIterator[bytes]:
        """SSE bytes until the reader is dropped or the hub closes; then the stream ends."""
        if keepalive is None:
            keepalive = self._hub.keepalive
        try:
            while not self.closed:
                if not self.pending:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(keepalive):
                            await self._wake.wait()
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                if self.closed:
                    break
                batch = b"".join(event.encoded() for event in self.pending.values())
                self.pending.clear()
                self.unread_since = None
                yield batch
        finally:
            self._hub.leave(self)


class EventHub:
    def __init__(
        self,
        clock: Callable[[], float],
        history: int = HISTORY,
        max_pending: int = MAX_PENDING,
        max_unread: float = MAX_UNREAD_SECONDS,
        first_id: int = 1,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        """``first_id``: the server starts its ids from the wall clock in milliseconds, so the ids
        of a restarted server are all newer than any a reader kept from before the restart."""
        self.clock = clock
        self.keepalive = keepalive
        self._history: deque[Event] = deque(maxlen=history)
        self._ids = itertools.count(first_id)
        self._first_id = first_id
        self._last_id = first_id - 1
        self._readers: set[Reader] = set()
        self._max_pending = max_pending
        self._max_unread = max_unread
        self.dropped = 0
        """Readers dropped for staying behind, for metrics and tests."""

    @property
    def last_id(self) -> int:
        return self._last_id

    @property
    def readers(self) -> int:
        return len(self._readers)

    def publish(self, kind: str, key: str, data: dict[str, Any]) -> Event:
        event = Event(next(self._ids), kind, key, data)
        self._last_id = event.id
        self._history.append(event)
        now = self.clock()
        for reader in list(self._readers):
            reader.put(event, now)
            if len(reader.pending) > self._max_pending or reader.behind(now, self._max_unread):
                self.dropped += 1
                reader.end(dropped=True)
                self._readers.discard(reader)
        return event

    def join(self, last_event_id: int | None) -> Reader:
        """A new reader; with ``last_event_id``, what it missed comes first (coalesced), or a
        ``reset`` if the history no longer reaches back that far (or the id is not this hub's,
        e.g. from before a restart). ``0`` asks for the whole history."""
        now = self.clock()
        reader = Reader(self)
        if last_event_id is not None and last_event_id != self._last_id:
            if last_event_id == 0:
                last_event_id = self._first_id - 1
            oldest = self._history[0].id if self._history else self._last_id + 1
            if oldest - 1 <= last_event_id <= self._last_id:
                for event in self._history:
                    if event.id > last_event_id:
                        reader.put(event, now)
            else:
                reader.put(Event(self._last_id, "reset", "reset", {}), now)
        self._readers.add(reader)
        return reader

    def leave(self, reader: Reader) -> None:
        self._readers.discard(reader)

    def close(self) -> None:
        """The server is stopping: every stream ends, so the HTTP server can finish."""
        for reader in list(self._readers):
            reader.end(dropped=False)
        self._readers.clear()
