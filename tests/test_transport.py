"""Real-time pacing, stop, preemption and the wire rule (never an end without a start)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from media.transport import AudioChannel, AudioConsumer, AudioTransport, Outcome

FRAME = 0.02


@dataclass(frozen=True)
class Frame:
    is_start: bool
    is_end: bool
    data: str


def track(name: str, frames: int) -> tuple[Frame, ...]:
    return tuple(Frame(i == 0, i == frames - 1, f"{name}{i}") for i in range(frames))


END = Frame(False, True, "end")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def make(preroll: float = 0.06, tick: float = 0.005) -> tuple[AudioTransport[Frame], AudioChannel[Frame]]:
    transport = AudioTransport(preroll=preroll, tick=tick, end_frame=END)
    return transport, AudioChannel(transport.channel_capacity(FRAME))


async def drain(consumer: AudioConsumer[Frame], until: Callable[[Frame], bool]) -> list[tuple[float, Frame]]:
    loop = asyncio.get_running_loop()
    received = []
    while True:
        frame = await consumer.next()
        assert frame is not None
        received.append((loop.time(), frame))
        if until(frame):
            return received


def test_a_track_streams_in_real_time_after_the_preroll() -> None:
    async def scenario() -> None:
        transport, channel = make(preroll=0.06)
        consumer = channel.attach()
        outcomes: list[Outcome] = []
        started = asyncio.get_running_loop().time()
        transport.play(channel, track("a", 25), FRAME, outcomes.append)
        received = await drain(consumer, lambda f: f.is_end)
        assert [f.data for _, f in received] == [f"a{i}" for i in range(25)]
        for index, (arrival, _) in enumerate(received):
            due = started + index * FRAME - 0.06
            assert arrival >= due - 0.001, f"frame {index} came {due - arrival:.3f} s early"
            assert arrival <= started + index * FRAME + 0.015, f"frame {index} came late"
        assert received[-1][0] - started >= 24 * FRAME - 0.06 - 0.001
        await asyncio.sleep(0)
        assert outcomes == [Outcome.FINISHED]
        await transport.close()

    run(scenario)


def test_the_preroll_goes_out_at_once() -> None:
    async def scenario() -> None:
        transport, channel = make(preroll=0.1)
        transport.play(channel, track("a", 50), FRAME, lambda _: None)
        assert len(channel) == 6
        await transport.close()

    run(scenario)


def test_stop_drops_unsent_frames_and_closes_the_recording() -> None:
    async def scenario() -> None:
        transport, channel = make()
        consumer = channel.attach()
        outcomes: list[Outcome] = []
        transport.play(channel, track("a", 100), FRAME, outcomes.append)
        first = await consumer.next()
        assert first is not None
        assert first.is_start
        transport.stop(channel)
        assert outcomes == [Outcome.STOPPED]
        assert await consumer.next() == END
        assert transport.active == 0
        await transport.close()

    run(scenario)


def test_stop_before_anything_was_sent_sends_nothing() -> None:
    async def scenario() -> None:
        transport, channel = make()
        transport.play(channel, track("a", 100), FRAME, lambda _: None)
        transport.stop(channel)
        consumer = channel.attach()
        transport.play(channel, track("b", 2), FRAME, lambda _: None)
        assert (await consumer.next()) == Frame(True, False, "b0")
        await transport.close()

    run(scenario)


def test_stop_while_idle_sends_nothing() -> None:
    async def scenario() -> None:
        transport, channel = make()
        transport.stop(channel)
        assert len(channel) == 0

    run(scenario)


def test_play_while_playing_ends_the_old_recording_then_starts_the_new() -> None:
    async def scenario() -> None:
        transport, channel = make()
        consumer = channel.attach()
        outcomes: list[tuple[str, Outcome]] = []
        transport.play(channel, track("a", 100), FRAME, lambda o: outcomes.append(("a", o)))
        await consumer.next()
        transport.play(channel, track("b", 3), FRAME, lambda o: outcomes.append(("b", o)))
        received = await drain(consumer, lambda f: f.data == "b2")
        assert [f.data for _, f in received] == ["end", "b0", "b1", "b2"]
        await asyncio.sleep(0)
        assert outcomes == [("a", Outcome.STOPPED), ("b", Outcome.FINISHED)]
        await transport.close()

    run(scenario)


def test_a_new_consumer_never_sees_an_end_for_a_recording_it_did_not_open() -> None:
    async def scenario() -> None:
        transport, channel = make()
        old = channel.attach()
        transport.play(channel, track("a", 100), FRAME, lambda _: None)
        await old.next()
        new = channel.attach()
        assert await old.next() is None
        transport.stop(channel)
        transport.play(channel, track("b", 2), FRAME, lambda _: None)
        assert (await new.next()) == Frame(True, False, "b0")
        await transport.close()

    run(scenario)


def test_a_reader_that_stalls_holds_the_playback_back_instead_of_growing_the_buffer() -> None:
    async def scenario() -> None:
        transport, channel = make(preroll=0.04, tick=0.005)
        transport.play(channel, track("a", 100), FRAME, lambda _: None)
        await asyncio.sleep(0.3)
        assert len(channel) == channel.capacity
        consumer = channel.attach()
        loop = asyncio.get_running_loop()
        resumed = loop.time()
        received = await drain(consumer, lambda f: f.data == "a30")
        # After the backlog, the rest is paced in real time again, not burst.
        assert received[-1][0] - resumed >= (30 - channel.capacity) * FRAME - 0.04 - 0.01
        await transport.close()

    run(scenario)


def test_closing_the_channel_stops_its_playback_and_wakes_the_reader() -> None:
    async def scenario() -> None:
        transport, channel = make()
        consumer = channel.attach()
        outcomes: list[Outcome] = []
        transport.play(channel, track("a", 100), FRAME, outcomes.append)
        await consumer.next()

        async def read_until_closed() -> int:
            count = 0
            while await consumer.next() is not None:
                count += 1
            return count

        reader = asyncio.ensure_future(read_until_closed())
        await asyncio.sleep(0.05)
        channel.close()
        assert await reader >= 1
        await asyncio.sleep(0.02)
        assert outcomes == [Outcome.STOPPED]
        assert transport.active == 0
        await transport.close()

    run(scenario)


def test_many_channels_share_one_scheduler() -> None:
    async def scenario() -> None:
        transport = AudioTransport(preroll=0.04, tick=0.005, end_frame=END)
        channels = [AudioChannel[Frame](transport.channel_capacity(FRAME)) for _ in range(50)]
        consumers = [channel.attach() for channel in channels]
        for index, channel in enumerate(channels):
            transport.play(channel, track(f"c{index}-", 10), FRAME, lambda _: None)
        results = await asyncio.gather(*(drain(c, lambda f: f.is_end) for c in consumers))
        assert all(len(r) == 10 for r in results)
        assert transport.active == 0
        await transport.close()

    run(scenario)


def test_streams_of_different_packet_durations_each_keep_their_own_pace() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport = AudioTransport(preroll=0.04, tick=0.005, end_frame=END)
        paces = (0.02, 0.06, 0.04)
        channels = [AudioChannel[Frame](transport.channel_capacity(pace)) for pace in paces]
        readers = [asyncio.ensure_future(drain(channel.attach(), lambda f: f.is_end)) for channel in channels]
        starts = []
        for index, (channel, pace) in enumerate(zip(channels, paces, strict=True)):
            starts.append(loop.time())
            transport.play(channel, track(f"p{index}-", 8), pace, lambda _: None)
            await asyncio.sleep(0.013)  # staggered starts interleave in the due-time heap
        results = await asyncio.gather(*readers)
        for received, pace, started in zip(results, paces, starts, strict=True):
            assert len(received) == 8
            for index, (arrival, _) in enumerate(received):
                assert arrival >= started + index * pace - 0.04 - 0.001, f"{pace} s packet {index} early"
                assert arrival <= started + index * pace + 0.015, f"{pace} s packet {index} late"
        await transport.close()

    run(scenario)
