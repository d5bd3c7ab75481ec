"""The whole server over real gRPC on loopback, driven by simulated devices, with the audio checked for real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from actors.leds import STATUS_ERROR, STATUS_IDLE, STATUS_PLAYING, mode_leds, render
from actors.state import DeviceState
from media.library import SoundLibrary
from media.opus import SAMPLE_RATE, decode_packets, samples_per_frame
from rpc import comms_pb2 as pb
from rpc.server import ControlPlane
from simulator import Button, EventType, Recording, SimulatedDevice, button_event
from simulator.device import StreamKind
from tests import live
from tests.live import Route, assert_ended_with, fleet_status, run, serving, shows, target, wait_for_fleet

FRAME = 0.02
LONG_MODE = 1


@pytest.fixture(autouse=True, params=list(Route), ids=[route.value for route in Route])
def route(request: pytest.FixtureRequest) -> Iterator[Route]:
    """Every scenario runs twice: devices straight to the server, and through HAProxy to it."""
    live.route = request.param
    try:
        yield request.param
    finally:
        live.route = Route.DIRECT


def idle_in(mode: int) -> tuple[int, int, int, int, int]:
    return (STATUS_IDLE.rgba, *mode_leds(mode))


def playing_in(mode: int) -> tuple[int, int, int, int, int]:
    return (STATUS_PLAYING.rgba, *mode_leds(mode))


def device(plane: object, device_id: str, **options: object) -> SimulatedDevice:
    return SimulatedDevice(target(plane), device_id, play_in_real_time=False, **options)  # type: ignore[arg-type]


async def until(dev: SimulatedDevice, condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    """The simulator's own wait: ``condition`` is checked again after every change the device notes
    (each packet, ack, LED set and stream end), so this waits for a state, not for a while."""
    await dev._wait_until(condition, timeout, what)


async def until_audio(dev: SimulatedDevice, packets: int, recording: int = 0) -> None:
    """Until the device's ``recording``-th recording (0 for the first) has ``packets`` packets."""

    def arrived() -> bool:
        return len(dev.recordings) > recording and len(dev.recordings[recording].packets) >= packets

    await until(dev, arrived, f"{packets} packets of recording {recording}")


async def until_open_streams(plane: ControlPlane, count: int, timeout: float = 5) -> None:
    """Until the server holds ``count`` streams of each kind: a stream it let go of is closed with
    the supervisor (told in order, before any later press) as the gauge drops."""
    registry = plane.metrics.registry
    async with asyncio.timeout(timeout):
        while any(
            registry.get_sample_value("acp_open_streams", {"kind": kind}) != count
            for kind in ("status", "events", "audio")
        ):
            await asyncio.sleep(0.01)


async def press_times(dev: SimulatedDevice, button: Button, times: int) -> None:
    for _ in range(times):
        assert await dev.press(button)


def rms(pcm: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def spectrum(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Magnitude spectrum of the first 1.5 s in 100 bands: a coarse fingerprint of pitch and timbre."""
    head = pcm[: int(1.5 * SAMPLE_RATE)].astype(np.float64)
    magnitude = np.abs(np.fft.rfft(head, n=int(1.5 * SAMPLE_RATE)))[: 8000 * 3 // 2]
    bands = magnitude.reshape(100, -1).sum(axis=1)
    return np.asarray(bands / np.linalg.norm(bands), dtype=np.float64)


def assert_is_the_sound_of(recording: Recording, library: SoundLibrary, mode: int) -> None:
    sound = library.for_mode(mode)
    assert recording.complete
    assert recording.packets[0].is_start
    assert recording.packets[-1].is_end
    assert all(packet.data for packet in recording.packets), "every packet carries audio"
    assert len(recording.pcm) == len(sound.packets) * samples_per_frame(20)
    assert abs(recording.duration - sound.duration) <= FRAME
    assert rms(recording.pcm) > 300, "the recording is not silent"
    reference = decode_packets(sound.packets).astype(np.float64)
    correlation = float(np.corrcoef(recording.pcm.astype(np.float64), reference)[0, 1])
    assert correlation > 0.99, f"the device heard mode {mode}'s sound (correlation {correlation:.3f})"


def test_a_device_is_shown_idle_in_mode_0_as_soon_as_it_connects(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            leds = await dev.wait_for_first_set(5)
            assert shows(render(DeviceState()))(leds)
            assert dev.gets_received == 1, "the server asks what the device shows first"

    run(scenario)


def test_mode_presses_are_acked_and_shown_on_the_mode_leds(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            await dev.wait_for_first_set(5)
            for mode in (1, 2, 3, 4, 0):
                assert await dev.press(Button.MODE)
                await dev.wait_for_leds(shows(idle_in(mode)), 2)

    run(scenario)


def test_play_streams_the_modes_sound_in_real_time_to_the_end(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            await dev.wait_for_first_set(5)
            pressed = time.monotonic()
            assert await dev.press(Button.PLAY)
            await dev.wait_for_leds(shows(playing_in(0)), 2)
            [recording] = await dev.wait_for_recordings(1, 10)
            assert_is_the_sound_of(recording, library, 0)
            sound = library.for_mode(0)
            assert recording.arrivals[0] - pressed < 0.1, "the sound starts soon after the press"
            streamed = recording.arrivals[-1] - recording.arrivals[0]
            expected = sound.streamed_duration - FRAME - 0.1  # the last frame's start, less the pre-roll
            assert expected - 0.05 <= streamed <= expected + 0.1, "paced in real time, not one burst"
            await dev.wait_for_leds(shows(idle_in(0)), 2)
            assert dev.audio_error is None

    run(scenario)


def test_every_modes_recording_is_its_own_sound_and_differs_from_the_others(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            devices = [device(plane, f"device-{mode}") for mode in range(library.modes)]
            for dev in devices:
                await dev.connect()
            for mode, dev in enumerate(devices):
                await press_times(dev, Button.MODE, mode)
                assert await dev.press(Button.PLAY)
            longest = max(sound.streamed_duration for sound in library.sounds)
            recordings = [(await dev.wait_for_recordings(1, longest + 5))[0] for dev in devices]
            for mode, recording in enumerate(recordings):
                assert_is_the_sound_of(recording, library, mode)
            assert recordings[LONG_MODE].duration >= 30
            fingerprints = [spectrum(recording.pcm) for recording in recordings]
            for a in range(len(recordings)):
                for b in range(a + 1, len(recordings)):
                    similarity = float(fingerprints[a] @ fingerprints[b])
                    assert similarity < 0.9, f"modes {a} and {b} sound alike ({similarity:.2f})"
            for dev in devices:
                assert dev.audio_error is None
                await dev.disconnect()

    run(scenario, timeout=90)


def test_stop_mid_stream_ends_the_recording_within_a_frame_and_returns_to_idle(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            await press_times(dev, Button.MODE, LONG_MODE)
            assert await dev.press(Button.PLAY)
            await until_audio(dev, 25)  # 0.5 s of the long sound: well past the 100 ms pre-roll
            recording = dev.recordings[0]
            assert recording.is_open
            stop_sent = time.monotonic()
            assert await dev.press(Button.STOP)
            [stopped] = await dev.wait_for_recordings(1, 2)
            assert stopped.ended_at is not None
            assert stopped.ended_at - stop_sent <= FRAME + 0.01
            assert stopped.packets[-1].is_end
            assert stopped.duration < 2, "the long sound was cut short"
            await dev.wait_for_leds(shows(idle_in(LONG_MODE)), 2)
            # Nothing follows the end packet: the next thing on the stream is the next sound's start.
            assert await dev.press(Button.MODE)
            assert await dev.press(Button.PLAY)
            _, after = await dev.wait_for_recordings(2, 10)
            assert_is_the_sound_of(after, library, LONG_MODE + 1)
            assert dev.packets_ignored == 0, "no packet arrived between the end and the next start"
            assert dev.audio_packets_received == len(stopped.packets) + len(after.packets)
            assert dev.audio_error is None

    run(scenario)


def test_stop_while_idle_is_acked_and_sends_no_audio(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            await dev.wait_for_first_set(5)
            assert await dev.press(Button.STOP)
            assert dev.audio_packets_received == 0
            # Whatever the stop sent would come before the next sound: the first packet must be its start.
            assert await dev.press(Button.PLAY)
            await until(dev, lambda: dev.audio_packets_received > 0, "the first packet after Play")
            assert dev.audio_error is None, "a stray end packet kills the device's audio loop"
            assert dev.packets_ignored == 0
            [recording] = dev.recordings
            assert recording.packets[0].is_start
            assert dev.audio_packets_received == len(recording.packets)

    run(scenario)


def test_play_while_playing_ends_the_old_sound_and_starts_the_new_modes(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            await press_times(dev, Button.MODE, LONG_MODE)
            assert await dev.press(Button.PLAY)
            await until_audio(dev, 20)  # 0.4 s of the long sound: it is playing
            assert await dev.press(Button.MODE)
            await dev.wait_for_leds(shows(playing_in(2)), 2)
            assert len(dev.recordings) == 1, "Mode does not interrupt playback"
            assert dev.recordings[0].is_open
            assert await dev.press(Button.PLAY)
            first, second = await dev.wait_for_recordings(2, 10)
            assert first.complete
            assert first.duration < 2
            assert_is_the_sound_of(second, library, 2)
            assert dev.audio_error is None

    run(scenario)


def test_the_server_waits_while_the_device_plays_a_clip(library: SoundLibrary) -> None:
    """The real device reads nothing while it plays; the next clip must still arrive whole."""

    async def scenario() -> None:
        async with serving(library) as plane:
            dev = SimulatedDevice(target(plane), "kitchen", play_in_real_time=True)
            async with dev:
                assert await dev.press(Button.PLAY)
                await dev.wait_for_recordings(1, 10)
                assert await dev.press(Button.PLAY)
                first, second = await dev.wait_for_recordings(2, 15)
                assert_is_the_sound_of(first, library, 0)
                assert_is_the_sound_of(second, library, 0)

    run(scenario)


def test_devices_keep_their_own_state_leds_and_audio(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            kitchen, hall, garden = (device(plane, name) for name in ("kitchen", "hall", "garden"))
            for dev in (kitchen, hall, garden):
                await dev.connect()
            await press_times(kitchen, Button.MODE, 1)
            await press_times(hall, Button.MODE, 3)
            assert await garden.press(Button.PLAY)
            await kitchen.wait_for_leds(shows(idle_in(1)), 2)
            await hall.wait_for_leds(shows(idle_in(3)), 2)
            await garden.wait_for_leds(shows(playing_in(0)), 2)
            await garden.wait_for_recordings(1, 10)
            assert kitchen.audio_packets_received == 0
            assert hall.audio_packets_received == 0
            for dev in (kitchen, hall, garden):
                await dev.disconnect()

    run(scenario)


def test_a_disconnect_stops_playback_and_a_reconnect_resumes_the_mode(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            dev = device(plane, "kitchen")
            await dev.connect()
            await press_times(dev, Button.MODE, 2)
            assert await dev.press(Button.PLAY)
            await dev.disconnect()
            await wait_for_fleet(plane, lambda status: status.connected == 0)
            await dev.connect()
            await dev.wait_for_leds(shows(idle_in(2)), 2)
            assert await dev.press(Button.MODE)
            await dev.wait_for_leds(shows(idle_in(3)), 2)
            await dev.disconnect()

    run(scenario)


def test_presses_made_while_disconnected_are_acted_on_after_the_reconnect(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            dev = device(plane, "kitchen")
            await dev.connect()
            await dev.wait_for_first_set(5)
            await dev.disconnect()
            queued = [asyncio.ensure_future(dev.press(Button.MODE)) for _ in range(2)]
            queued.append(asyncio.ensure_future(dev.press(Button.PLAY)))
            await until(dev, lambda: dev.pending_events == 3, "three presses queued while disconnected")
            await dev.connect()
            assert await asyncio.gather(*queued) == [True, True, True]
            [recording] = await dev.wait_for_recordings(1, 10)
            assert_is_the_sound_of(recording, library, 2)
            await dev.disconnect()

    run(scenario)


def test_the_same_device_id_from_a_new_connection_takes_over(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            old = device(plane, "kitchen")
            await old.connect()
            await press_times(old, Button.MODE, 1)
            new = device(plane, "kitchen")
            await new.connect()
            kinds: tuple[StreamKind, ...] = ("status", "events", "audio")
            for kind in kinds:
                assert_ended_with(await old.wait_for_stream_end(kind, 5), grpc.StatusCode.ABORTED, "kitchen")
            await new.wait_for_leds(shows(idle_in(1)), 2)
            assert await new.press(Button.MODE)
            await new.wait_for_leds(shows(idle_in(2)), 2)
            assert (await fleet_status(plane)).connected == 1
            await old.disconnect()
            await until_open_streams(plane, 1)  # the old connection's streams are closed before Play
            assert await new.press(Button.PLAY)
            [recording] = await new.wait_for_recordings(1, 10)
            assert_is_the_sound_of(recording, library, 2)
            await new.disconnect()

    run(scenario)


def test_a_bad_device_id_is_refused_with_invalid_argument(library: SoundLibrary) -> None:
    cases = {
        "missing device_id": [("other", "x")],
        "empty": [("device_id", "")],
        "at most 128": [("device_id", "x" * 129)],
        "given 2 times": [("device_id", "a"), ("device_id", "b")],
    }

    async def scenario() -> None:
        async with serving(library) as plane:
            for message, metadata in cases.items():
                dev = SimulatedDevice(target(plane), "bad", metadata=metadata, play_in_real_time=False)
                await dev.connect()
                kinds: tuple[StreamKind, ...] = ("status", "events", "audio")
                for kind in kinds:
                    end = await dev.wait_for_stream_end(kind, 5)
                    assert_ended_with(end, grpc.StatusCode.INVALID_ARGUMENT, message)
                await dev.disconnect()
            assert (await fleet_status(plane)).connected == 0
            async with device(plane, "x" * 128) as good:
                await good.wait_for_first_set(5)

    run(scenario)


def test_unknown_buttons_and_event_kinds_are_nacked_and_the_stream_goes_on(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            assert not await dev.send_event(button_event(7))
            assert not await dev.send_event(button_event(Button.MODE, 9))
            assert not await dev.send_event(pb.DeviceEvent())
            assert not await dev.press(Button.CONNECT)
            assert not await dev.press(Button.PLAY, EventType.HOLD)
            assert await dev.press(Button.MODE, EventType.RELEASE)
            assert await dev.press(Button.MODE)
            await dev.wait_for_leds(shows(idle_in(1)), 2)
            assert dev.stream_errors == {}

    run(scenario)


def test_holding_mode_returns_to_mode_0(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            await press_times(dev, Button.MODE, 3)
            assert await dev.press(Button.MODE, EventType.HOLD)
            await dev.wait_for_leds(shows(idle_in(0)), 2)

    run(scenario)


def test_led_set_errors_are_retried_until_the_device_shows_the_state(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            await dev.wait_for_first_set(5)
            dev.fail_next_sets = 2
            assert await dev.press(Button.MODE)
            await dev.wait_for_leds(shows(idle_in(1)), 5)
            assert plane.metrics.led_sets_failed == 2

    run(scenario)


def test_an_audio_stream_request_without_start_is_refused(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, grpc.aio.insecure_channel(target(plane)) as channel:
            from rpc import comms_pb2_grpc

            stub = comms_pb2_grpc.DeviceServiceStub(channel)
            call = stub.ServerAudioStream(pb.AudioStreamRequest(start=False), metadata=(("device_id", "k"),))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "start" in (refused.value.details() or "")

    run(scenario)


def test_losing_only_the_audio_stream_shows_an_error(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, device(plane, "kitchen") as dev:
            await dev.wait_for_first_set(5)
            conn = dev._conn
            assert conn is not None
            conn.audio_call.cancel()
            await dev.wait_for_leds(lambda leds: leds[1] >> 8 == STATUS_ERROR.rgba >> 8, 2)

    run(scenario)


async def first_to_lose(kind: StreamKind, first: SimulatedDevice, second: SimulatedDevice) -> SimulatedDevice:
    """Whichever of the two has its ``kind`` stream ended by the server first."""
    waits = {asyncio.ensure_future(dev.wait_for_stream_end(kind, 5)): dev for dev in (first, second)}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    finished = next(iter(done))
    finished.result()
    return waits[finished]


def test_two_connections_racing_for_one_device_id_keep_the_newest_stream_of_each_kind(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            for attempt in range(5):
                first, second = device(plane, "kitchen"), device(plane, "kitchen")
                await asyncio.gather(first.connect(), second.connect())
                holder: dict[StreamKind, SimulatedDevice] = {}
                kinds: tuple[StreamKind, ...] = ("status", "events", "audio")
                for kind in kinds:
                    loser = await first_to_lose(kind, first, second)
                    assert_ended_with(loser.stream_ends[kind], grpc.StatusCode.ABORTED, "replaced")
                    holder[kind] = second if loser is first else first
                for kind in kinds:
                    assert kind not in holder[kind].stream_ends, "exactly one stream of each kind stays"
                # The device works through the streams that won: an ack, an LED set, audio.
                assert await holder["events"].press(Button.MODE)
                await holder["status"].wait_for_leds(shows(idle_in((attempt + 1) % library.modes)), 2)
                assert await holder["events"].press(Button.PLAY)
                await until_audio(holder["audio"], 1)
                assert holder["audio"].audio_error is None
                assert (await fleet_status(plane)).connected == 1
                await first.disconnect()
                await second.disconnect()
                await wait_for_fleet(plane, lambda status: status.connected == 0)

    run(scenario)
