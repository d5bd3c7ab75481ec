"""Real-time pacing of pre-encoded audio to many devices from one asyncio loop.

The device actors decide what plays; this module moves the packets. One scheduler task
serves every active playback on a fixed tick (no timer per packet per device), keeping each
stream ``preroll`` seconds ahead of real time. Playbacks wait in a heap ordered by when their
next packet is due, so a tick touches only the streams with a packet to push, not all of them
(with 60 ms packets and a 10 ms tick, one in six). Each device connection has an
``AudioChannel``: a small bounded buffer between the scheduler and the gRPC stream that
reads it. A full buffer means the device is not reading (no audio stream yet, or the
device is busy playing a recording): the playback waits, then resumes in real time
instead of bursting. All methods run on the event loop thread.

Packets are elastic: a track is a sound's frames (``Track``), and each time a stream's next
packet is due the transport asks ``packing`` how many frames a packet should carry now (one
while the server is idle, up to 120 ms of them under load: ``media.packing``). Pacing, the
channel's room and lateness are counted in frames, so a stream may change its packet size at
any packet boundary. When admitted streams fall behind even so, ``shed`` ends the newest ones.

Time comes from a ``Clock``: the running loop's by default, a virtual one in tests, so pacing
can be checked tick by tick without real waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar


class FrameLike(Protocol):
    @property
    def is_start(self) -> bool: ...

    @property
    def is_end(self) -> bool: ...


F = TypeVar("F", bound=FrameLike)
F_co = TypeVar("F_co", bound=FrameLike, covariant=True)

logger = logging.getLogger(__name__)


class PlaybackEnd(enum.Enum):
    """How a playback ended: the one vocabulary for it, from the transport up to the metrics.

    The transport reports COMPLETED (the device took the whole sound), STOPPED (cut short) or
    SHED (ended to keep the other streams on time); the device actor, which knows why it cut one
    short, says STOPPED, PREEMPTED or DISCONNECTED.
    """

    COMPLETED = "completed"
    STOPPED = "stopped"
    PREEMPTED = "preempted"
    DISCONNECTED = "disconnected"
    SHED = "shed"


class Track(Protocol[F_co]):
    """A sound as the transport sends it: ``len`` frames, packed ``frames`` at a time on request."""

    def __len__(self) -> int: ...

    def packet(self, index: int, frames: int) -> tuple[F_co, int]:
        """The packet starting at frame ``index``, of at most ``frames`` frames, and how many it holds."""
        ...


class FixedTrack(Generic[F]):
    """Ready-made packets of one frame each: a track that never changes its packet size."""

    __slots__ = ("_packets",)

    def __init__(self, packets: Sequence[F]) -> None:
        self._packets = tuple(packets)

    def __len__(self) -> int:
        return len(self._packets)

    def packet(self, index: int, frames: int) -> tuple[F, int]:
        return self._packets[index], 1


EndCallback = Callable[[PlaybackEnd], None]


class Clock(Protocol):
    """Where the scheduler reads the time and waits out a tick: injectable so tests run on virtual time."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...


class LoopClock:
    """The running event loop's clock (``loop.time()``, ``asyncio.sleep``): what production paces on.

    ``sleep`` returns ``asyncio.sleep``'s own coroutine rather than wrapping it in another one:
    a tick costs two plain calls more than a hard-wired loop clock, and a packet nothing.
    """

    __slots__ = ()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(seconds)


class _Playback(Generic[F]):
    __slots__ = ("_on_end", "anchor", "channel", "frame_duration", "held", "index", "track")

    def __init__(
        self,
        channel: AudioChannel[F],
        track: Track[F],
        frame_duration: float,
        anchor: float,
        on_end: EndCallback,
    ) -> None:
        self.channel = channel
        self.track = track
        self.frame_duration = frame_duration
        self.index = 0
        self.anchor = anchor
        self.held = False
        """Its reader stopped taking packets (a full channel): re-anchored, not late."""
        self._on_end: EndCallback | None = on_end

    def next_due(self, preroll: float) -> float:
        """When the next packet must be pushed to stay ``preroll`` ahead of real time (``index`` counts frames)."""
        return self.anchor + self.index * self.frame_duration - preroll

    def end(self, outcome: PlaybackEnd) -> None:
        callback, self._on_end = self._on_end, None
        if callback is not None:
            callback(outcome)


class AudioChannel(Generic[F]):
    """The packets on their way to one device connection, read by at most one consumer.

    ``capacity`` counts frames, not packets: the room is the same audio whatever the packet size.
    """

    __slots__ = ("_buffer", "_consumer", "_waiter", "buffered", "capacity", "closed")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Made on the first packet: an idle device's channel costs no deque block (~0.7 KB).
        self._buffer: deque[tuple[F, int, _Playback[F] | None]] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._consumer: AudioConsumer[F] | None = None
        self.closed = False
        self.buffered = 0
        """Frames in the packets not yet taken."""

    def __len__(self) -> int:
        return len(self._buffer) if self._buffer is not None else 0

    def has_room(self) -> bool:
        return self.buffered < self.capacity

    def push(self, frame: F, completes: _Playback[F] | None = None, frames: int = 1) -> None:
        if self._buffer is None:
            self._buffer = deque()
        self._buffer.append((frame, frames, completes))
        self.buffered += frames
        self._wake()

    def clear(self) -> None:
        """Drop what the consumer has not taken; playbacks whose end was dropped are stopped."""
        while self._buffer:
            _, _, completes = self._buffer.popleft()
            if completes is not None:
                completes.end(PlaybackEnd.STOPPED)
        self.buffered = 0

    def close(self) -> None:
        self.closed = True
        self.clear()
        self._wake()

    def attach(self) -> AudioConsumer[F]:
        """A newer consumer (a new audio stream of the same connection) replaces the old one."""
        self._consumer = AudioConsumer(self)
        self._wake()
        return self._consumer

    def _take(self, consumer: AudioConsumer[F]) -> tuple[F, _Playback[F] | None] | None:
        if self.closed or consumer is not self._consumer or not self._buffer:
            return None
        frame, frames, completes = self._buffer.popleft()
        self.buffered -= frames
        return frame, completes

    def _consumer_open(self) -> bool:
        return self._consumer is not None and self._consumer.recording_open

    def _is_current(self, consumer: AudioConsumer[F]) -> bool:
        return not self.closed and not consumer.closed and consumer is self._consumer

    async def _wait(self) -> None:
        """One future per wait and no ``shield``: this runs once per packet per stream.

        A consumer still waiting (one replaced by a newer stream) is woken first, so no
        future is ever shared and cancelling a wait cancels only its own future.
        """
        self._wake()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class AudioConsumer(Generic[F]):
    """One audio stream's view of its channel.

    It enforces the device's rule at the wire: a stream never carries an end without a start,
    so a frame that belongs to a recording this stream did not open is dropped.
    """

    def __init__(self, channel: AudioChannel[F]) -> None:
        self._channel = channel
        self.recording_open = False
        self.closed = False

    def close(self) -> None:
        """This stream is gone: a reader waiting in ``next`` gets None."""
        self.closed = True
        self._channel._wake()

    async def next(self) -> F | None:
        """The next frame to send, or None once this stream is superseded or the channel closed."""
        channel = self._channel
        while channel._is_current(self):
            item = channel._take(self)
            if item is None:
                await channel._wait()
                continue
            frame, completes = item
            if completes is not None:
                completes.end(PlaybackEnd.COMPLETED)
            if frame.is_start:
                self.recording_open = not frame.is_end
                return frame
            if not self.recording_open:
                continue
            if frame.is_end:
                self.recording_open = False
            return frame
        return None


class AudioTransport(Generic[F]):
    """Paces every playback from one scheduler task."""

    def __init__(
        self,
        *,
        preroll: float,
        tick: float,
        end_frame: F,
        on_lateness: Callable[[float], None] | None = None,
        clock: Clock | None = None,
        packing: Callable[[], int] | None = None,
    ) -> None:
        """``on_lateness`` hears, once per tick, how late the most overdue packet was pushed.

        ``clock`` defaults to the running loop's (``LoopClock``). ``packing`` says how many frames
        the next packet of a stream should carry (asked per packet; default one).
        """
        if preroll < 0 or tick <= 0:
            raise ValueError("preroll must be >= 0 and tick > 0")
        self.preroll = preroll
        self.tick = tick
        self.clock: Clock = clock if clock is not None else LoopClock()
        self._end_frame = end_frame
        self._on_lateness = on_lateness
        self._packing: Callable[[], int] = packing if packing is not None else _one_frame
        self.packets_pushed = 0
        """Packets pushed since the start: with ``frames_pushed``, what the load model reads."""
        self.frames_pushed = 0
        self.shed_total = 0
        self._worst = 0.0
        self._lag = 0.0
        """How much later than asked the current tick woke: the loop's own delay."""
        self._held = 0
        self._worst_held = 0.0
        self._active: dict[AudioChannel[F], _Playback[F]] = {}
        self._due: list[tuple[float, int, _Playback[F]]] = []
        """Heap of (next packet due, tie-breaker, playback); stopped playbacks are skipped when popped."""
        self._order = itertools.count()
        self._runner: asyncio.Task[None] | None = None

    @property
    def active(self) -> int:
        return len(self._active)

    def channel_capacity(self, frame_duration: float, max_frames: int = 1) -> int:
        """Frames of room: the pre-roll plus two ticks of slack and one largest packet beyond it,
        so only a stalled reader fills it."""
        return int((self.preroll + 2 * self.tick) / frame_duration) + 3 + max(1, max_frames)

    def play(
        self, channel: AudioChannel[F], track: Track[F], frame_duration: float, on_end: EndCallback
    ) -> None:
        """Start ``track`` now on ``channel``, ending (with an end frame) what plays there."""
        self.stop(channel)
        if channel.closed:
            on_end(PlaybackEnd.STOPPED)
            return
        now = self.clock.now()
        playback = _Playback(channel, track, frame_duration, now, on_end)
        if not self._pump(playback, now):
            self._active[channel] = playback
            self._schedule(playback)
            if self._runner is None:
                self._runner = asyncio.get_running_loop().create_task(self._run(), name="audio-transport")

    def stop(self, channel: AudioChannel[F]) -> None:
        """End the stream now: unsent frames are dropped and the device's recording is closed."""
        playback = self._active.pop(channel, None)
        had_frames = len(channel) > 0
        channel.clear()
        if playback is not None:
            playback.end(PlaybackEnd.STOPPED)
        if not channel.closed and (playback is not None or had_frames or channel._consumer_open()):
            channel.push(self._end_frame)

    def shed(self, count: int) -> int:
        """End the ``count`` newest playbacks (an end frame each) so the rest keep on time.

        Their ``on_end`` hears SHED; returns how many were ended.
        """
        newest = list(self._active)[-count:] if count > 0 else []
        for channel in reversed(newest):
            playback = self._active.pop(channel)
            channel.clear()
            playback.end(PlaybackEnd.SHED)
            if not channel.closed:
                channel.push(self._end_frame)
        self.shed_total += len(newest)
        return len(newest)

    async def close(self) -> None:
        for channel in list(self._active):
            self.stop(channel)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    async def _run(self) -> None:
        clock_now, sleep = self.clock.now, self.clock.sleep
        expected = clock_now()
        try:
            while self._active:
                now = clock_now()
                self._worst = self._worst_held = 0.0
                self._held = 0
                self._lag = max(0.0, now - expected)
                due = self._due
                pumped: list[_Playback[F]] = []
                while due and due[0][0] <= now:
                    playback = heapq.heappop(due)[2]
                    if self._active.get(playback.channel) is not playback:
                        continue  # stopped, or replaced by a newer playback
                    try:
                        finished = self._pump(playback, now)
                    except Exception:
                        # One playback that cannot be packed must not stop the pacing of all.
                        logger.exception("audio playback failed; ending it")
                        self.stop(playback.channel)
                        continue
                    if finished:
                        del self._active[playback.channel]
                    else:
                        pumped.append(playback)
                for playback in pumped:  # after the loop: a stalled reader's retry is due at once
                    self._schedule(playback)
                if self._held > max(HELD_ALONE, len(self._active) * HELD_SHARE):
                    # So many full channels at once are not devices that stopped reading but the
                    # server's own writes falling behind: their lateness is the transport's.
                    self._worst = max(self._worst, self._worst_held)
                if self._on_lateness is not None:
                    try:
                        self._on_lateness(self._worst)
                    except Exception:
                        logger.exception("the pacing's lateness report failed")
                expected = clock_now() + self.tick
                await sleep(self.tick)
        finally:
            self._runner = None
            self._due.clear()

    def _schedule(self, playback: _Playback[F]) -> None:
        heapq.heappush(self._due, (playback.next_due(self.preroll), next(self._order), playback))

    def _pump(self, playback: _Playback[F], now: float) -> bool:
        """Push what is due by ``now`` plus the pre-roll; True once the whole track is pushed."""
        channel, track = playback.channel, playback.track
        if channel.closed:
            playback.end(PlaybackEnd.STOPPED)
            return True
        frame_duration, length = playback.frame_duration, len(track)
        due = now - playback.anchor + self.preroll
        overdue = due - playback.index * frame_duration
        if playback.held:
            # Re-anchored when its channel was full: the reader's wait, not the transport's; of
            # it only this tick's own delay counts (a held loop drains no channel either), unless
            # too many are held at once (see _run).
            playback.held = False
            self._worst = max(self._worst, self._lag)
            self._held += 1
            self._worst_held = max(self._worst_held, overdue)
        elif overdue > self._worst and playback.index < length:
            self._worst = overdue
        wanted = self._packing()
        while playback.index < length and playback.index * frame_duration <= due:
            if not channel.has_room():
                playback.anchor = now - playback.index * frame_duration
                playback.held = True
                return False
            packet, frames = track.packet(playback.index, wanted)
            playback.index += frames
            self.packets_pushed += 1
            self.frames_pushed += frames
            channel.push(packet, playback if playback.index >= length else None, frames)
        return playback.index >= length


HELD_ALONE = 2
HELD_SHARE = 0.1
"""More streams than this share (and than HELD_ALONE) with a full channel in one tick: the writes
are behind, not the devices."""


def _one_frame() -> int:
    return 1
