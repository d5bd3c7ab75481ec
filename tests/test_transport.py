"""Pacing, stop, preemption and the wire rule (never an end without a start), on virtual time.

Every test but one drives the transport with a ``VirtualClock``: a tick happens when the test
advances time, so "100 ms later exactly 5 more 20 ms packets were pushed" holds on any machine. The
tick (4 ms) and pre-roll (50 ms) put every packet's due time half a tick between two ticks, so no
count depends on how a float rounds at a tick boundary.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from media.transport import (
    AudioChannel,
    AudioConsumer,
    AudioTransport,
    FixedTrack,
    LoopClock,
    PlaybackEnd,
    _Playback,
)
from tests.clocks import VirtualClock

FRAME = 0.02
TICK = 0.004
PREROLL = 0.05
AT_ONCE = 3
"""Packets 0, 1 and 2 are within the 50 ms pre-roll: they go out the moment a track starts."""
EXACT = 1e-9
"""Float rounding only: virtual times are sums of the same ticks, never a scheduling margin."""


@dataclass(frozen=True)
class Frame:
    is_start: bool
    is_end: bool
    data: str


def track(name: str, frames: int) -> FixedTrack[Frame]:
    return FixedTrack([Frame(i == 0, i == frames - 1, f"{name}{i}") for i in range(frames)])


def names(name: str, first: int, last: int) -> list[str]:
    return [f"{name}{i}" for i in range(first, last + 1)]


END = Frame(False, True, "end")


class PackedTrack:
    """Packets of as many frames as asked (``a0+3`` holds frames 0..2), as elastic tracks give them."""

    def __init__(self, name: str, frames: int) -> None:
        self.name = name
        self.frames = frames
        self.asked: list[int] = []

    def __len__(self) -> int:
        return self.frames

    def packet(self, index: int, frames: int) -> tuple[Frame, int]:
        self.asked.append(frames)
        taken = min(frames, self.frames - index)
        return Frame(index == 0, index + taken == self.frames, f"{self.name}{index}+{taken}"), taken


def run(test: Callable[[], Awaitable[None]]) -> None:
    """A hang (a wait that never ends) fails the test instead of passing it."""
    asyncio.run(asyncio.wait_for(test(), 10))


class Wire(AudioChannel[Frame]):
    """A channel that notes the virtual time of every push, and what its reader took."""

    def __init__(self, capacity: int, clock: VirtualClock) -> None:
        super().__init__(capacity)
        self._clock = clock
        self.pushed: list[tuple[float, str]] = []
        self.consumer: AudioConsumer[Frame] | None = None
        self.received: list[str] = []

    def push(self, frame: Frame, completes: _Playback[Frame] | None = None, frames: int = 1) -> None:
        self.pushed.append((self._clock.now(), frame.data))
        super().push(frame, completes, frames)

    def pushed_names(self) -> list[str]:
        return [data for _, data in self.pushed]

    def push_time(self, data: str) -> float:
        [when] = [when for when, pushed in self.pushed if pushed == data]
        return when

    def read(self) -> AudioConsumer[Frame]:
        self.consumer = self.attach()
        return self.consumer

    async def take_buffered(self) -> list[str]:
        """What the reader gets without waiting: everything buffered (none of it dropped by the wire rule)."""
        assert self.consumer is not None
        taken = []
        while len(self) > 0:
            frame = await self.consumer.next()
            assert frame is not None
            taken.append(frame.data)
        self.received += taken
        return taken


class Rig:
    """A transport on virtual time, and what it reported each tick; ``packing`` frames a packet."""

    def __init__(self, preroll: float = PREROLL) -> None:
        self.clock = VirtualClock()
        self.lateness: list[float] = []
        self.packing = 1
        self.transport = AudioTransport(
            preroll=preroll,
            tick=TICK,
            end_frame=END,
            on_lateness=self.lateness.append,
            clock=self.clock,
            packing=lambda: self.packing,
        )

    @property
    def ticks(self) -> int:
        """How many ticks the scheduler has run: ``on_lateness`` hears once per tick."""
        return len(self.lateness)

    def wire(self, frame_duration: float = FRAME, max_frames: int = 1) -> Wire:
        return Wire(self.transport.channel_capacity(frame_duration, max_frames), self.clock)

    async def play_for(self, seconds: float, *readers: Wire) -> None:
        """Let ``seconds`` of virtual time pass a tick at a time, each reader taking what arrived."""
        for _ in range(round(seconds / TICK)):
            await self.clock.advance(TICK)
            for wire in readers:
                await wire.take_buffered()


def assert_paced(wire: Wire, name: str, frames: int, started: float, frame_duration: float = FRAME) -> None:
    """Packet i goes out at the first tick at or after ``started + i * frame_duration - preroll``."""
    for index in range(frames):
        pushed = wire.push_time(f"{name}{index}")
        due = started + index * frame_duration - PREROLL
        if index * frame_duration <= PREROLL:
            assert pushed == started, f"{name}{index} is in the pre-roll"
        else:
            assert due <= pushed < due + TICK, f"{name}{index} due at {due:.3f} s went out at {pushed:.3f} s"


@pytest.mark.parametrize(("preroll", "at_once"), [(0.0, 1), (PREROLL, AT_ONCE), (0.11, 6)])
def test_the_preroll_goes_out_at_once(preroll: float, at_once: int) -> None:
    async def scenario() -> None:
        rig = Rig(preroll)
        wire = rig.wire()
        rig.transport.play(wire, track("a", 50), FRAME, lambda _: None)
        assert wire.pushed == [(0.0, f"a{i}") for i in range(at_once)]
        assert len(wire) == at_once
        await rig.transport.close()

    run(scenario)


def test_after_the_preroll_one_packet_goes_out_per_frame_of_virtual_time() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        wire.read()
        rig.transport.play(wire, track("a", 50), FRAME, lambda _: None)
        await wire.take_buffered()
        await rig.play_for(0.1, wire)
        assert wire.pushed_names() == names("a", 0, AT_ONCE + 5 - 1), "100 ms later: 5 more 20 ms packets"
        await rig.play_for(0.1, wire)
        assert len(wire.pushed) == AT_ONCE + 10
        assert_paced(wire, "a", AT_ONCE + 10, started=0.0)
        assert wire.received == wire.pushed_names()
        await rig.transport.close()

    run(scenario)


def test_a_track_is_finished_when_its_reader_takes_the_last_frame_and_then_the_scheduler_stops() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        consumer = wire.read()
        outcomes: list[PlaybackEnd] = []
        rig.transport.play(wire, track("a", 25), FRAME, outcomes.append)
        await rig.play_for(0.42, wire)  # a23 was due at 0.41 s
        assert wire.received == names("a", 0, 23)
        await rig.clock.advance(0.02)  # a24 is due at 0.43 s; the reader takes nothing meanwhile
        assert wire.pushed_names() == names("a", 0, 24), "the whole track is pushed"
        assert rig.transport.active == 0
        assert outcomes == [], "pushed is not finished: the last frame still waits for its reader"
        last = await consumer.next()
        assert last == Frame(False, True, "a24")
        assert outcomes == [PlaybackEnd.COMPLETED]
        ticks = rig.ticks
        await rig.clock.advance(10 * TICK)
        assert rig.clock.sleeping == 0, "nothing plays: the scheduler no longer ticks"
        assert rig.ticks == ticks
        assert_paced(wire, "a", 25, started=0.0)
        await rig.transport.close()

    run(scenario)


def test_a_reader_that_stalls_holds_the_playback_back_instead_of_growing_the_buffer() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        rig.transport.play(wire, track("a", 100), FRAME, lambda _: None)
        await rig.clock.advance(0.3)
        assert len(wire) == wire.capacity
        assert wire.pushed_names() == names("a", 0, wire.capacity - 1)
        ticks = rig.ticks
        await rig.clock.advance(0.3)
        assert rig.ticks == ticks + round(0.3 / TICK), "the scheduler kept ticking"
        assert len(wire.pushed) == wire.capacity, "and pushed nothing more while the reader stalled"
        assert rig.transport.active == 1
        await rig.transport.close()

    run(scenario)


def test_after_a_stall_the_playback_resumes_in_real_time_without_a_burst() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        rig.transport.play(wire, track("a", 100), FRAME, lambda _: None)
        await rig.clock.advance(0.602)
        wire.read()
        backlog = await wire.take_buffered()
        assert backlog == names("a", 0, wire.capacity - 1)
        resumed = rig.clock.now()
        await rig.play_for(0.1, wire)
        # The pre-roll again at the next tick, then one packet per 20 ms: not the 600 ms missed.
        after = names("a", wire.capacity, wire.capacity + AT_ONCE + 5 - 1)
        assert wire.received == backlog + after, "every packet, in order, none skipped"
        refill = {wire.push_time(data) for data in after[:AT_ONCE]}
        assert len(refill) == 1, "the pre-roll went out in one tick"
        [refilled] = refill
        assert resumed < refilled <= resumed + TICK
        paced = [wire.push_time(data) for data in after[AT_ONCE - 1 :]]
        gaps = [later - earlier for earlier, later in itertools.pairwise(paced)]
        assert gaps[0] < FRAME
        assert all(abs(gap - FRAME) < EXACT for gap in gaps[1:]), gaps
        await rig.transport.close()

    run(scenario)


def test_stop_drops_unsent_packets_and_sends_one_end_frame() -> None:
    async def scenario() -> None:
        rig = Rig()
        stopped, other = rig.wire(), rig.wire()
        consumer = stopped.read()
        other.read()
        outcomes: list[PlaybackEnd] = []
        rig.transport.play(stopped, track("a", 100), FRAME, outcomes.append)
        rig.transport.play(other, track("b", 100), FRAME, lambda _: None)
        first = await consumer.next()
        assert first == Frame(True, False, "a0")
        rig.transport.stop(stopped)
        assert outcomes == [PlaybackEnd.STOPPED]
        assert rig.transport.active == 1
        assert len(stopped) == 1, "a1 and a2 were dropped"
        assert await consumer.next() == END
        ticks = rig.ticks
        await rig.play_for(0.1, other)
        assert rig.ticks > ticks, "the scheduler ran on for the other playback"
        assert len(other.received) == AT_ONCE + 5
        assert stopped.pushed_names() == [*names("a", 0, AT_ONCE - 1), "end"], "nothing after the end"
        assert len(stopped) == 0
        await rig.transport.close()

    run(scenario)


def test_stop_before_the_reader_took_anything_leaves_it_nothing_but_the_next_start() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        rig.transport.play(wire, track("a", 100), FRAME, lambda _: None)
        rig.transport.stop(wire)
        consumer = wire.read()
        rig.transport.play(wire, track("b", 2), FRAME, lambda _: None)
        assert await consumer.next() == Frame(True, False, "b0")
        assert await consumer.next() == Frame(False, True, "b1")
        assert len(wire) == 0, "the end frames of a recording the reader never opened were dropped"
        await rig.transport.close()

    run(scenario)


def test_stop_while_idle_sends_nothing() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        wire.read()
        rig.transport.stop(wire)
        assert wire.pushed == []
        assert len(wire) == 0

    run(scenario)


def test_a_preempting_play_ends_the_old_recording_with_an_end_frame_before_the_new_start() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        consumer = wire.read()
        outcomes: list[tuple[str, PlaybackEnd]] = []
        rig.transport.play(wire, track("a", 100), FRAME, lambda o: outcomes.append(("a", o)))
        await consumer.next()
        await rig.play_for(0.1, wire)
        preempted = rig.clock.now()
        rig.transport.play(wire, track("b", 3), FRAME, lambda o: outcomes.append(("b", o)))
        assert outcomes == [("a", PlaybackEnd.STOPPED)]
        assert await wire.take_buffered() == ["end", "b0", "b1", "b2"], "a's unsent packets were dropped"
        assert wire.push_time("end") == wire.push_time("b0") == preempted
        assert outcomes == [("a", PlaybackEnd.STOPPED), ("b", PlaybackEnd.COMPLETED)]
        await rig.transport.close()

    run(scenario)


def test_a_new_consumer_never_sees_an_end_for_a_recording_it_did_not_open() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        old = wire.attach()
        rig.transport.play(wire, track("a", 100), FRAME, lambda _: None)
        await old.next()
        new = wire.attach()
        assert await old.next() is None, "the older stream is superseded"
        rig.transport.stop(wire)
        rig.transport.play(wire, track("b", 2), FRAME, lambda _: None)
        assert await new.next() == Frame(True, False, "b0")
        await rig.transport.close()

    run(scenario)


def test_closing_the_channel_wakes_its_waiting_reader_and_stops_its_playback() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        consumer = wire.read()
        outcomes: list[PlaybackEnd] = []
        rig.transport.play(wire, track("a", 100), FRAME, outcomes.append)
        waiting = asyncio.Event()

        async def read_until_closed() -> list[str]:
            taken: list[str] = []
            while True:
                if len(wire) == 0:
                    waiting.set()  # next() now parks in the empty channel before this task yields
                frame = await consumer.next()
                if frame is None:
                    return taken
                taken.append(frame.data)

        reader = asyncio.ensure_future(read_until_closed())
        await waiting.wait()
        assert not reader.done()
        wire.close()
        assert await reader == names("a", 0, AT_ONCE - 1)
        await rig.clock.advance(FRAME)  # the scheduler notices when the next packet is due
        assert outcomes == [PlaybackEnd.STOPPED]
        assert rig.transport.active == 0
        assert len(wire.pushed) == AT_ONCE, "nothing is pushed to a closed channel"
        await rig.transport.close()

    run(scenario)


def test_a_play_on_a_closed_channel_is_stopped_at_once() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire()
        wire.close()
        outcomes: list[PlaybackEnd] = []
        rig.transport.play(wire, track("a", 10), FRAME, outcomes.append)
        assert outcomes == [PlaybackEnd.STOPPED]
        assert wire.pushed == []
        assert rig.transport.active == 0

    run(scenario)


def test_many_channels_share_one_scheduler() -> None:
    async def scenario() -> None:
        rig = Rig()
        wires = [rig.wire() for _ in range(50)]
        for index, wire in enumerate(wires):
            wire.read()
            rig.transport.play(wire, track(f"c{index}-", 10), FRAME, lambda _: None)
        await rig.clock.advance(TICK)
        assert rig.clock.sleeping == 1, "one scheduler task for all fifty"
        await rig.play_for(10 * FRAME, *wires)
        for index, wire in enumerate(wires):
            assert wire.received == names(f"c{index}-", 0, 9)
            assert_paced(wire, f"c{index}-", 10, started=0.0)
        assert rig.transport.active == 0
        await rig.transport.close()

    run(scenario)


def test_streams_of_different_packet_durations_each_keep_their_own_pace() -> None:
    async def scenario() -> None:
        rig = Rig()
        paces = (0.02, 0.06, 0.04)
        wires = [rig.wire(pace) for pace in paces]
        for wire in wires:
            wire.read()
        starts = []
        for index, (wire, pace) in enumerate(zip(wires, paces, strict=True)):
            starts.append(rig.clock.now())
            rig.transport.play(wire, track(f"p{index}-", 8), pace, lambda _: None)
            await rig.play_for(3 * TICK, *wires)  # staggered starts interleave in the due-time heap
        await rig.play_for(8 * max(paces), *wires)
        for index, (wire, pace, started) in enumerate(zip(wires, paces, starts, strict=True)):
            assert wire.received == names(f"p{index}-", 0, 7)
            assert_paced(wire, f"p{index}-", 8, started, pace)
        await rig.transport.close()

    run(scenario)


def test_lateness_is_reported_once_per_tick_as_the_most_overdue_packet() -> None:
    async def scenario() -> None:
        rig = Rig()
        often, seldom = rig.wire(0.02), rig.wire(0.06)
        often.read()
        seldom.read()
        rig.transport.play(often, track("o", 100), 0.02, lambda _: None)
        await rig.play_for(3 * TICK, often)
        rig.transport.play(seldom, track("s", 100), 0.06, lambda _: None)  # at 0.012 s
        await rig.play_for(0.08, often, seldom)
        await rig.clock.advance(TICK / 2)  # to 0.094 s, between the ticks at 0.092 s and 0.096 s
        on_time = list(rig.lateness)
        assert len(on_time) == round(0.092 / TICK) + 1, "one report per tick, the first at the start"
        assert on_time[:2] == [0.0, 0.0], "a tick with nothing due reports 0"
        assert max(on_time) < TICK, "each packet went out at the first tick after it was due"
        assert often.pushed_names() == names("o", 0, 7)
        assert seldom.pushed_names() == names("s", 0, 2)
        o8_due = 8 * 0.02 - PREROLL  # 0.11 s
        s3_due = 3 * TICK + 3 * 0.06 - PREROLL  # 0.142 s
        await rig.clock.stall(0.05)  # the loop is held up: the tick due at 0.096 s runs at 0.144 s
        late_tick = rig.clock.now()
        assert o8_due < s3_due <= late_tick
        assert len(rig.lateness) == len(on_time) + 1, "the stall was one (late) tick"
        assert abs(rig.lateness[-1] - (late_tick - o8_due)) < EXACT, "the most overdue packet counts"
        assert often.pushed[8:] == [(late_tick, "o8"), (late_tick, "o9")], "the late tick caught up"
        assert seldom.pushed[3:] == [(late_tick, "s3")]
        await rig.transport.close()

    run(scenario)


def test_by_default_the_transport_paces_on_the_running_loops_clock() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport = AudioTransport(preroll=PREROLL, tick=0.005, end_frame=END)
        assert isinstance(transport.clock, LoopClock)
        before = loop.time()
        assert before <= transport.clock.now() <= loop.time()
        channel = AudioChannel[Frame](transport.channel_capacity(FRAME))
        consumer = channel.attach()
        outcomes: list[PlaybackEnd] = []
        transport.play(channel, track("a", 6), FRAME, outcomes.append)
        received = [await consumer.next() for _ in range(6)]
        assert [frame.data for frame in received if frame is not None] == names("a", 0, 5)
        assert loop.time() - before >= 5 * FRAME - PREROLL, "paced in real time, not sent at once"
        assert outcomes == [PlaybackEnd.COMPLETED]
        await transport.close()

    run(scenario)


def test_a_negative_preroll_or_a_tick_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="preroll"):
        AudioTransport(preroll=-0.01, tick=TICK, end_frame=END)
    with pytest.raises(ValueError, match="tick"):
        AudioTransport(preroll=PREROLL, tick=0, end_frame=END)


def test_packets_carry_as_many_frames_as_packing_says_and_are_paced_by_the_audio_they_hold() -> None:
    async def scenario() -> None:
        rig = Rig()
        rig.packing = 3
        wire = rig.wire(max_frames=6)
        wire.read()
        rig.transport.play(wire, PackedTrack("a", 30), FRAME, lambda _: None)
        assert wire.pushed == [(0.0, "a0+3")], "frames 0-2 are the whole pre-roll: one packet"
        await rig.play_for(0.2, wire)
        # a3+3 is due when frame 3 is (0.06 - 0.05 s), a6+3 at 0.07 s, ... a12+3 at 0.19 s.
        assert wire.received == ["a0+3", "a3+3", "a6+3", "a9+3", "a12+3"]
        for name, first in (("a3+3", 3), ("a6+3", 6), ("a12+3", 12)):
            due = first * FRAME - PREROLL
            assert due <= wire.push_time(name) < due + TICK
        assert rig.transport.frames_pushed == 15
        assert rig.transport.packets_pushed == 5
        await rig.transport.close()

    run(scenario)


def test_a_stream_changes_its_packet_size_at_the_next_packet_boundary_without_losing_a_frame() -> None:
    async def scenario() -> None:
        rig = Rig()
        wire = rig.wire(max_frames=6)
        wire.read()
        outcomes: list[PlaybackEnd] = []
        rig.transport.play(wire, PackedTrack("a", 40), FRAME, outcomes.append)
        await rig.play_for(0.1, wire)
        rig.packing = 6
        await rig.play_for(0.3, wire)
        rig.packing = 2
        await rig.play_for(0.5, wire)
        held = [(int(name[1:].split("+")[0]), int(name.split("+")[1])) for name in wire.received]
        covered = [frame for first, count in held for frame in range(first, first + count)]
        assert covered == list(range(40)), "every frame once, in order"
        assert {count for _, count in held} >= {1, 6, 2}
        assert outcomes == [PlaybackEnd.COMPLETED]
        await rig.transport.close()

    run(scenario)


@pytest.mark.parametrize("packing", [1, 3, 6])
def test_stop_ends_the_stream_within_one_packet_at_any_size(packing: int) -> None:
    async def scenario() -> None:
        rig = Rig()
        rig.packing = packing
        wire = rig.wire(max_frames=6)
        consumer = wire.read()
        rig.transport.play(wire, PackedTrack("a", 300), FRAME, lambda _: None)
        await rig.play_for(0.5, wire)
        assert len(wire) == 0
        await rig.clock.advance(TICK)  # the next packet may be buffered, not yet taken
        rig.transport.stop(wire)
        assert await consumer.next() == END, "the end comes next: nothing queued ahead of it"
        assert len(wire) == 0
        await rig.play_for(0.2, wire)
        assert wire.pushed_names()[-1] == "end", "nothing was pushed after the end"
        await rig.transport.close()

    run(scenario)


def test_shedding_ends_the_newest_streams_with_an_end_frame_and_the_older_play_on() -> None:
    async def scenario() -> None:
        rig = Rig()
        wires = [rig.wire() for _ in range(5)]
        outcomes: dict[int, list[PlaybackEnd]] = {index: [] for index in range(5)}
        for wire in wires:
            wire.read()
        for index, wire in enumerate(wires):
            rig.transport.play(wire, track(f"s{index}-", 200), FRAME, outcomes[index].append)
            await rig.play_for(TICK, *wires)
        assert rig.transport.shed(2) == 2
        assert outcomes[4] == outcomes[3] == [PlaybackEnd.SHED]
        assert outcomes[0] == outcomes[1] == outcomes[2] == []
        assert rig.transport.active == 3
        await rig.play_for(0.1, *wires)
        for index in (3, 4):
            assert wires[index].received[-1] == "end", "the device's recording is closed"
        for index in (0, 1, 2):
            assert wires[index].received[-1] != "end"
        assert rig.transport.shed(0) == 0
        assert rig.transport.shed_total == 2
        await rig.transport.close()

    run(scenario)


def test_a_reader_that_stalls_is_its_own_wait_not_lateness_of_the_transport() -> None:
    async def scenario() -> None:
        rig = Rig()
        stalled, reading = rig.wire(), rig.wire()
        reading.read()
        rig.transport.play(stalled, track("s", 200), FRAME, lambda _: None)
        rig.transport.play(reading, track("r", 200), FRAME, lambda _: None)
        await rig.play_for(1.0, reading)
        assert len(stalled) == stalled.capacity, "the stalled reader's channel is full"
        assert max(rig.lateness) < TICK, "and nothing is reported late"
        stalled.read()
        await rig.play_for(0.2, stalled, reading)
        assert max(rig.lateness) < TICK, "nor when it reads again and the stream resumes"
        await rig.transport.close()

    run(scenario)


def test_a_held_loop_is_late_even_for_streams_whose_channels_it_left_full() -> None:
    """The loop that paces also drains the channels: held, it fills them, and is still late."""

    async def scenario() -> None:
        rig = Rig()
        full = rig.wire()
        rig.transport.play(full, track("f", 200), FRAME, lambda _: None)
        await rig.play_for(0.5)
        assert len(full) == full.capacity
        assert max(rig.lateness) < TICK
        await rig.clock.stall(0.1)
        assert rig.lateness[-1] > 0.09, "the tick ran 100 ms late: that is the transport's lateness"
        await rig.transport.close()

    run(scenario)


def test_many_full_channels_at_once_are_the_transport_falling_behind_not_their_readers() -> None:
    async def scenario() -> None:
        rig = Rig()
        wires = [rig.wire() for _ in range(5)]
        for index, wire in enumerate(wires):
            rig.transport.play(wire, track(f"w{index}-", 400), FRAME, lambda _: None)
        await rig.play_for(1.0)  # nobody reads: every channel full, as when writes back up
        assert all(len(wire) == wire.capacity for wire in wires)
        assert max(rig.lateness[-10:]) > PREROLL, "five of five held: reported late"
        await rig.transport.close()

    run(scenario)
