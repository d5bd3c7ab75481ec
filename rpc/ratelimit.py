"""Back-pressure for event floods: a device sending events faster than its rate is read slower.

Each event stream has a token bucket (``--event-rate`` tokens a second, up to
``--event-burst`` saved up). An event that finds a token is handled at once. An event that
finds none waits until its token is due, and the handler reads nothing else meanwhile: gRPC
stops taking the device's messages and HTTP/2 flow control holds the sender back, at the cost
of a timer to us instead of a read, a parse and an answer per event. The event is then handled
normally, so a device that bursts is served slower, never refused.

A device that stays over its rate ends up throttled on every event. ``Throttle`` says when
that has lasted too long (``--event-abuse-seconds``): the servicer then ends the stream.

Both classes only do arithmetic on an injected clock; the waiting is the caller's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_SLACK = 1e-9
"""Float error must not make a device exactly at its rate wait."""


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def wait_time(self) -> float:
        """Seconds from now until a token is there (0.0: one is there now). Changes nothing."""
        tokens = self._tokens_at(self._clock())
        if tokens >= 1.0 - _SLACK:
            return 0.0
        return (1.0 - tokens) / self._rate

    def take(self) -> None:
        """Spend a token, now or ahead of its time: a caller that has not waited ``wait_time()``
        owes it, and the next caller waits that much longer."""
        now = self._clock()
        self._tokens = self._tokens_at(now) - 1.0
        self._last = now

    def allow(self) -> bool:
        """Spend a token if one is there now."""
        if self.wait_time() > 0:
            return False
        self.take()
        return True

    def _tokens_at(self, now: float) -> float:
        return min(self._burst, self._tokens + (now - self._last) * self._rate)


class Throttle:
    """A stream's bucket and the rule that ends a flood.

    A device is *over its rate* from the first event that has to wait for its token until the
    device leaves a token unused: an event that finds its token there *and* took the device
    at least half a token's time to send (``idle``, from the last event handled to this one
    read). A run that would last longer than ``abuse_after`` seconds (the event just read
    would be handled later than that after the run began) is abuse.

    Why the pause counts, not only the token: a server that runs late (its loop stalled for
    longer than a token's time) finds a token piled up for a flooder too, whose next event was
    already waiting (idle about 0); that must not restart the flooder's run. A device sending
    below its rate pauses for most of a token's time before each event, so its run ends.
    """

    def __init__(
        self, rate: float, burst: int, abuse_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if abuse_after <= 0:
            raise ValueError("abuse_after must be > 0")
        self._bucket = TokenBucket(rate, burst, clock)
        self._pause = 0.5 / rate
        self._abuse_after = abuse_after
        self._clock = clock
        self._over_since: float | None = None

    def admit(self, idle: float) -> float | None:
        """For the event just read, ``idle`` seconds after the last one was handled: seconds it
        must wait for its token (0.0: none, handle it now), or None when the device has been
        over its rate for too long (end its stream)."""
        wait = self._bucket.wait_time()
        if wait == 0.0 and (self._over_since is None or idle >= self._pause):
            self._over_since = None
            self._bucket.take()
            return 0.0
        now = self._clock()
        if self._over_since is None:
            self._over_since = now
        if now + wait - self._over_since > self._abuse_after:
            return None
        self._bucket.take()  # its token, in advance when wait > 0: the caller waits for it
        return wait
