"""Admission control and elastic packing for audio, from what the transport measures itself.

A saturated real-time server serves everyone late, so a new stream is admitted only while the
server can carry it; but a server that refuses load its core carries (or a burst from idle) is
no better. The decision therefore rests on a measured model, not on guesses:

- ``observe_load`` hears, a few times a second, how busy the event loop was (its utilisation:
  the share of the interval not spent waiting in the selector, or the process's CPU per core
  it may use, whichever is larger) and how many packets the transport pushed meanwhile. With
  packets flowing, ``busy = base + cost * packets_per_second`` gives the cost of one packet (a
  gRPC message: that, not bytes, is what the server pays for; while streams are being started or
  stopped, whose work counts as the packets', a reading only bounds it from above); with too few to say, the base
  load (the least of the last ``base_window`` readings, so a passing storm does not count).
- **Packing**: the fewest frames per packet that keep the projected load at ``pack_target``
  (one frame on an idle server, up to 120 ms of them under load: ``frames_per_packet``).
- **Capacity**: the streams that fit under ``busy_target`` if every stream carried the largest
  packets (``capacity``). A burst is admitted while that headroom carries it; before any packet
  has been measured, the cost is ``prior_packet_cost``.
- **Shedding**: if admitted streams fall behind anyway (``late_ticks`` late ticks in a row: a
  misjudged burst, a noisy neighbour), packing goes to the largest packets at once; if they are
  late without a break for ``shed_grace`` and not catching up (a burst being worked off is),
  ``observe_lateness`` asks the transport to end the newest ``shed_share`` of the streams, and
  the capacity is held at what was left until pacing has been on time for a while (it then
  grows back by 2 % every ``probe_interval``).

The measured capacity never drops below ``min_capacity``; a configured ``max_streams`` caps all
of it. A preempting Play replaces a stream and is always admitted. Pure logic with a clock
passed in; thread-safe.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdmissionPolicy:
    max_streams: int = 0
    """Configured budget of concurrent streams; 0: only the measured capacity applies."""
    busy_target: float = 0.9
    """Share of the loop's time the streams may bring it to at the largest packets."""
    pack_target: float = 0.5
    """Packets grow once smaller ones would take the loop past this share."""
    frame_duration: float = 0.02
    max_frames: int = 6
    """Frames one packet may carry (120 ms of 20 ms frames)."""
    min_capacity: int = 16
    """The measured capacity never goes below this: a busy moment while nothing streams (a connect
    storm, a collection) must not close the door; shedding still catches a real overload."""
    prior_packet_cost: float = 100e-6
    """Seconds of loop time one packet costs before any is measured (gRPC's write of one message
    on this class of machine, measured by bench.suite); replaced by the measurement."""
    min_packet_rate: float = 300.0
    """Packets per second needed before the load says anything about the cost of one."""
    smoothing: float = 0.3
    """Weight of a new sample in the packet cost's running estimate."""
    base_window: int = 10
    """Readings (a tenth of a second each, from the server) the base load is the least of."""
    lateness_limit: float = 0.03
    """A tick whose most overdue packet is later than this means the transport is falling behind."""
    late_ticks: int = 3
    """Late ticks in a row that mean an overload rather than a pause."""
    shed_grace: float = 0.5
    """Seconds late without a break at the largest packets before streams are shed."""
    catch_up: float = 0.9
    """Late, but by less than this share of the lateness a grace ago: catching up, nobody is shed."""
    shed_share: float = 0.1
    """Share of the streams ended at each shedding (at least one)."""
    shed_cooldown: float = 0.5
    pressure_hold: float = 2.0
    """Seconds the largest packets are kept after the last late tick."""
    probe_interval: float = 2.0
    learn: bool = True
    """False: admit up to ``max_streams`` (or everyone), keep one frame per packet, never shed."""


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
        self.base = 0.0
        """Share of the loop busy without streams (idle devices, presses, the operator surface)."""
        self.packet_cost = self.policy.prior_packet_cost
        self.measured = False
        """Whether ``packet_cost`` comes from a measurement yet."""
        self._changes_since = 0
        """Streams started or ended since the last load reading."""
        self._idle_readings: deque[float] = deque(maxlen=self.policy.base_window)
        self.busy = 0.0
        """The loop's busy share in the last interval observed."""
        self.ceiling: int | None = None
        """Held after shedding: what was left streaming then."""
        self._packing = 1
        self._late_in_a_row = 0
        self._grace: tuple[float, float] | None = None
        """When the streams, late at the largest packets, started their grace, and how late they were."""
        self._pressure_until = -math.inf
        self._last_shed = -math.inf
        self._last_probe = -math.inf
        self._refusing = 0
        """Plays refused since admission last said yes (for one log line per burst)."""

    # -- the model ------------------------------------------------------------------------------

    def _packets_per_second(self, streams: int, frames: int) -> float:
        return streams / (frames * self.policy.frame_duration)

    def _projected(self, streams: int, frames: int) -> float:
        return self.base + self.packet_cost * self._packets_per_second(streams, frames)

    @property
    def measured_capacity(self) -> int:
        """Streams that fit under the busy target at the largest packets, by the model."""
        policy = self.policy
        per_stream = self.packet_cost * self._packets_per_second(1, policy.max_frames)
        return max(policy.min_capacity, math.floor((policy.busy_target - self.base) / per_stream))

    @property
    def capacity(self) -> int | None:
        """The most streams admitted at once now; None: no limit."""
        limits: list[int] = []
        if self.policy.max_streams:
            limits.append(self.policy.max_streams)
        if self.policy.learn:
            limits.append(self.measured_capacity)
            if self.ceiling is not None:
                limits.append(self.ceiling)
        return min(limits) if limits else None

    def frames_per_packet(self) -> int:
        """How many frames each stream's next packet should carry."""
        return self._packing

    def _repack(self, now: float) -> None:
        policy = self.policy
        if not policy.learn:
            self._packing = 1
            return
        if now < self._pressure_until:
            packing = policy.max_frames
        else:
            packing = next(
                (
                    frames
                    for frames in range(1, policy.max_frames + 1)
                    if self._projected(self.active, frames) <= policy.pack_target
                ),
                policy.max_frames,
            )
        self._packing = packing

    # -- what admission hears -----------------------------------------------------------------

    def admit(self, replacing: bool = False) -> Ticket | None:
        """A ticket for one more stream, or None when the server is at capacity."""
        with self._lock:
            capacity = self.capacity
            if replacing or capacity is None or self.active < capacity:
                self.active += 1
                self._changes_since += 1
                self._repack(self._clock())
                if self._refusing:
                    logger.info(
                        "admitting streams again after refusing %d (%d streaming, capacity %s)",
                        self._refusing,
                        self.active - 1,
                        capacity,
                    )
                    self._refusing = 0
                return Ticket(self)
            self._refusing += 1
            first = self._refusing == 1
        if first:
            logger.warning(
                "at audio capacity: refusing new streams (%d streaming, capacity %s%s)",
                self.active,
                capacity,
                self._basis(),
            )
        if self._on_refused is not None:
            self._on_refused()
        return None

    def observe_load(self, busy: float, packets_per_second: float) -> None:
        """The loop's busy share over the last interval and the packets pushed per second in it."""
        if not self.policy.learn:
            return
        weight = self.policy.smoothing
        with self._lock:
            self.busy = busy
            changes, self._changes_since = self._changes_since, 0
            if packets_per_second >= self.policy.min_packet_rate:
                sample = max(0.0, busy - self.base) / packets_per_second
                # Bounded: one interval can neither make packets free nor cost a millisecond.
                sample = min(max(sample, 5e-6), 1e-3)
                if changes > max(2, self.active // 50):
                    # Streams are being started or stopped (a burst of Plays, an announcement, a
                    # wave of Stops): the loop's work is theirs as much as the packets', so the
                    # reading is only a bound: a packet costs at most that much.
                    self.packet_cost = min(self.packet_cost, sample)
                    self._repack(self._clock())
                    return
                if self.measured:
                    self.packet_cost += weight * (sample - self.packet_cost)
                else:
                    self.packet_cost, self.measured = sample, True
            else:
                # The base is the least busy of the last few idle readings: a connect storm or a
                # collection passes, and a burst of Plays right after it must not find the door shut.
                self._idle_readings.append(min(0.9, max(0.0, busy - self.packet_cost * packets_per_second)))
                self.base = min(self._idle_readings)
            self._repack(self._clock())

    def observe_lateness(self, lateness: float) -> int:
        """Per scheduler tick: how late the most overdue packet was pushed (seconds).

        Returns how many of the newest streams the transport should shed now (usually 0).
        """
        policy = self.policy
        if not policy.learn:
            return 0
        now = self._clock()
        with self._lock:
            if lateness <= policy.lateness_limit:
                self._late_in_a_row = 0
                self._grace = None
                self._probe(now, lateness)
                return 0
            self._late_in_a_row += 1
            if self._late_in_a_row < policy.late_ticks or self.active == 0:
                return 0
            self._pressure_until = now + policy.pressure_hold
            if self._packing != policy.max_frames:
                self._repack(now)  # the largest packets, for every stream, at their next packet
            if self._grace is None:
                self._grace = (now, lateness)  # the larger packets get shed_grace to catch up
                return 0
            since, then = self._grace
            if now - since < policy.shed_grace or now - self._last_shed < policy.shed_cooldown:
                return 0
            self._grace = (now, lateness)
            if lateness < then * policy.catch_up:
                return 0  # less behind than before: a burst being worked off, not an overload
            count = max(1, math.ceil(self.active * policy.shed_share))
            self.ceiling = max(policy.min_capacity, self.active - count)
            self._last_shed = self._last_probe = now
            streaming = self.active
        logger.warning(
            "audio falling behind at the largest packets (%.0f ms late): shedding the %d newest of %d streams",
            lateness * 1000,
            count,
            streaming,
        )
        return count

    def _probe(self, now: float, lateness: float) -> None:
        """On time at the held ceiling: let it grow slowly, and drop it once the model allows more."""
        if self.ceiling is None:
            return
        settled = self.active >= self.ceiling and lateness < self.policy.lateness_limit / 2
        if settled and now - self._last_probe >= self.policy.probe_interval:
            self.ceiling += max(1, self.ceiling // 50)
            self._last_probe = now
        if self.ceiling >= self.measured_capacity:
            self.ceiling = None

    def _basis(self) -> str:
        """What the capacity comes from, for the log line."""
        capacity = self.capacity
        if capacity is None:
            return ""
        if self.policy.max_streams and capacity == self.policy.max_streams:
            return ", configured"
        if capacity == self.ceiling:
            return ", held since shedding"
        cost = f"{self.packet_cost * 1e6:.0f} us a packet"
        return f", measured: {cost}, base load {self.base:.0%}" if self.measured else f", {cost} assumed"

    def _release(self) -> None:
        with self._lock:
            self.active -= 1
            self._changes_since += 1
            self._repack(self._clock())
