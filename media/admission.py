"""Admission control for audio: refuse the newest stream rather than make every stream late.

A saturated real-time server serves everyone late (a 400-device overload left every stream
seconds behind and no Stop got its end packet in time), so the decision must be taken before
the work is accepted, and before the pacing shows the overload: by then the streams already
admitted are too many, and they play for as long as their sounds last. The capacity is the
smallest of:

- a configured budget (``max_streams``; 0: none), what the operator measured;
- an estimate from the process's own CPU: streams cost CPU in proportion, so with ``active``
  streams using ``share`` of a core the core carries about ``active * cpu_target / share``
  (``observe_cpu``, a few times a second; taken once at least ``min_sample`` stream);
- a limit learned from the transport's pacing, the safety net: when ``late_ticks`` ticks in a
  row pushed their most overdue packet later than ``lateness_limit`` (one late tick is a
  pause, such as a collection; an overload makes every tick late), it drops to 90 % of what
  streams, never below ``min_learned`` (once per ``cooldown``); while pacing stays well on
  time at that limit, it grows by 2 % every ``probe_interval``.

Before any estimate exists, a burst may grow the load by a quarter (at least ``ramp_floor``)
per ``ramp_window``, so the first CPU reading comes before the load can overshoot.

A preempting Play replaces a stream and is always admitted. Pure logic with a clock passed
in; thread-safe, since actors and the transport may call it from different threads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdmissionPolicy:
    max_streams: int = 0
    """Configured budget of concurrent streams; 0: only the estimated and learned capacity apply."""
    cpu_target: float = 0.9
    """Share of one core the streams may take (the rest: presses, connects, headroom)."""
    min_sample: int = 8
    """Streams needed before their CPU share says anything about the cost of one."""
    lateness_limit: float = 0.03
    """A tick whose most overdue packet is later than this means the transport is falling behind."""
    late_ticks: int = 3
    """Late ticks in a row that mean an overload rather than a pause."""
    min_learned: int = 16
    """The learned capacity never goes below this: fewer streams than that do not overload a core."""
    cooldown: float = 1.0
    probe_interval: float = 2.0
    ramp_window: float = 0.25
    ramp_floor: int = 16
    learn: bool = True


class Ticket:
    """One admitted stream; released exactly once, when its playback ends however it ends."""

    __slots__ = ("_admission", "_released")

    def __init__(self, admission: StreamAdmission) -> None:
        self._admission = admission
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._release()


class StreamAdmission:
    def __init__(
        self,
        policy: AdmissionPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.policy = policy or AdmissionPolicy()
        self._clock = clock
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self.active = 0
        self.learned: int | None = None
        self.estimated: int | None = None
        self._last_cut = -math.inf
        self._last_probe = -math.inf
        self._window_start = -math.inf
        self._window_base = 0
        self._refusing = 0
        """Plays refused since admission last said yes (for one log line per burst)."""
        self._late_in_a_row = 0

    @property
    def capacity(self) -> int | None:
        """The most streams admitted at once now; None: no limit configured or learned."""
        candidates = (self.policy.max_streams or None, self.estimated, self.learned)
        limits = [limit for limit in candidates if limit is not None]
        return min(limits) if limits else None

    def admit(self, replacing: bool = False) -> Ticket | None:
        """A ticket for one more stream, or None when the server is at capacity."""
        with self._lock:
            if replacing or self._has_room(self._clock()):
                self.active += 1
                if self._refusing:
                    logger.info(
                        "admitting streams again after refusing %d (%d streaming, capacity %s)",
                        self._refusing,
                        self.active - 1,
                        self.capacity,
                    )
                    self._refusing = 0
                return Ticket(self)
            self._refusing += 1
            first = self._refusing == 1
        if first:
            logger.warning(
                "at audio capacity: refusing new streams (%d streaming, capacity %s%s)",
                self.active,
                self.capacity if self.capacity is not None else "ramping",
                self._basis(),
            )
        if self._on_refused is not None:
            self._on_refused()
        return None

    def observe_cpu(self, share: float) -> None:
        """The process's CPU over the last interval, as a share of one core (0.5: half a core)."""
        if not self.policy.learn:
            return
        with self._lock:
            if self.active >= self.policy.min_sample and share > 0.01:
                self.estimated = max(
                    self.policy.min_sample, math.floor(self.active * self.policy.cpu_target / share)
                )

    def observe_lateness(self, lateness: float) -> None:
        """Per scheduler tick: how late the most overdue packet was pushed (seconds)."""
        if not self.policy.learn:
            return
        now = self._clock()
        with self._lock:
            if lateness > self.policy.lateness_limit:
                self._late_in_a_row += 1
                if (
                    self._late_in_a_row >= self.policy.late_ticks
                    and now - self._last_cut >= self.policy.cooldown
                    and self.active > 0
                ):
                    self.learned = max(self.policy.min_learned, math.floor(self.active * 0.9))
                    self._last_cut = now
                    self._last_probe = now
                return
            self._late_in_a_row = 0
            if (
                self.learned is not None
                and self.active >= self.learned
                and lateness < self.policy.lateness_limit / 2
                and now - self._last_probe >= self.policy.probe_interval
            ):
                self.learned += max(1, self.learned // 50)
                self._last_probe = now

    def _has_room(self, now: float) -> bool:
        capacity = self.capacity
        if capacity is not None and self.active >= capacity:
            return False
        if self.estimated is not None or self.learned is not None or not self.policy.learn:
            return True
        if self.policy.max_streams:
            return True  # a configured budget is what the operator knows the server carries
        if now - self._window_start >= self.policy.ramp_window:
            self._window_start, self._window_base = now, self.active
        ramp = max(self.policy.ramp_floor, self._window_base // 4)
        return self.active < self._window_base + ramp

    def _basis(self) -> str:
        """What the capacity comes from, for the log line."""
        capacity = self.capacity
        if capacity is None:
            return ""
        if capacity == self.learned:
            return ", learned from pacing"
        if capacity == self.estimated:
            return ", estimated from CPU"
        return ", configured"

    def _release(self) -> None:
        with self._lock:
            self.active -= 1
