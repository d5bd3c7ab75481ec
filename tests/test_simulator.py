"""The device simulator against a scripted fake DeviceService: it must behave as the real device does."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from media.opus import SAMPLE_RATE, OpusEncoder
from rpc import comms_pb2, comms_pb2_grpc
from simulator import (
    POWER_ON,
    AudioLoopError,
    Button,
    EventLostError,
    SimulatedDevice,
    button_event,
    reported,
)
from simulator.__main__ import main

FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
CONCEALMENT_SAMPLES = SAMPLE_RATE * 120 // 1000
SCENARIO_TIMEOUT = 10.0

Status = comms_pb2.DeviceStatusRequest
Packet = comms_pb2.AudioPacket


def opus_frames(count: int) -> list[bytes]:
    """count valid 20 ms Opus packets of a quiet tone."""
    t = np.arange(count * FRAME_SAMPLES) / SAMPLE_RATE
    pcm = (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return list(OpusEncoder(FRAME_MS).encode(pcm))


def clip(frames: int) -> list[Packet]:
    """A whole recording: is_start on the first packet, is_end on the last, real audio in every one."""
    data = opus_frames(frames)
    return [Packet(is_start=i == 0, is_end=i == len(data) - 1, data=chunk) for i, chunk in enumerate(data)]


def set_leds(**colours: int) -> Status:
    return Status(
        set=comms_pb2.DeviceStatusSet(**{name: comms_pb2.RGBAColor(rgba=v) for name, v in colours.items()})
    )


GET = Status(get=True)


def default_ack(event: comms_pb2.DeviceEvent) -> bool:
    return event.WhichOneof("event") == "button_event" and 0 <= event.button_event.button_id <= 3


async def until_cancelled() -> None:
    """The device never half-closes: a request stream that ends means its call is being cancelled."""
    await asyncio.Event().wait()


class FakeDeviceService(comms_pb2_grpc.DeviceServiceServicer):  # type: ignore[misc]
    """A scriptable server: tests push status requests and audio packets, and read what the device sent."""

    def __init__(self) -> None:
        self.status_out: asyncio.Queue[Status] = asyncio.Queue()
        self.status_in: asyncio.Queue[comms_pb2.DeviceStatusResponse] = asyncio.Queue()
        self.events_in: asyncio.Queue[comms_pb2.DeviceEvent] = asyncio.Queue()
        self.audio_out: asyncio.Queue[Packet | None] = asyncio.Queue()
        self.audio_requests: list[comms_pb2.AudioStreamRequest] = []
        self.ack_gate = asyncio.Event()
        self.ack_gate.set()
        self.ack_for: Callable[[comms_pb2.DeviceEvent], bool] = default_ack
        self.abort_on_open: dict[str, tuple[grpc.StatusCode, str]] = {}
        self.status_burst_then_abort: tuple[int, grpc.StatusCode, str] | None = None
        """Send that many GETs at once, then end StatusStream: the device's answers race with the end."""
        self.opened: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        """The handlers grpc cancelled because the device cancelled their call."""

    async def _open(self, kind: str, context: grpc.aio.ServicerContext[object, object]) -> None:
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        device_id = metadata.get("device_id")
        if not isinstance(device_id, str) or not device_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing device_id metadata")
        self.opened.append((kind, str(device_id)))
        if kind in self.abort_on_open:
            await context.abort(*self.abort_on_open[kind])

    async def StatusStream(
        self,
        request_iterator: AsyncIterator[comms_pb2.DeviceStatusResponse],
        context: grpc.aio.ServicerContext[object, object],
    ) -> None:
        await self._open("status", context)
        if self.status_burst_then_abort is not None:
            count, code, details = self.status_burst_then_abort
            for _ in range(count):
                await context.write(GET)
            await context.abort(code, details)

        async def send() -> None:
            while True:
                await context.write(await self.status_out.get())

        sender = asyncio.create_task(send())
        try:
            with self.noting_cancel("status"):
                async for response in request_iterator:
                    await self.status_in.put(response)
                await until_cancelled()
        finally:
            sender.cancel()

    async def EventStream(
        self,
        request_iterator: AsyncIterator[comms_pb2.DeviceEvent],
        context: grpc.aio.ServicerContext[object, object],
    ) -> None:
        await self._open("events", context)
        with self.noting_cancel("events"):
            async for event in request_iterator:
                await self.events_in.put(event)
                await self.ack_gate.wait()
                await context.write(comms_pb2.DeviceEventResponse(ack=self.ack_for(event)))
            await until_cancelled()

    async def ServerAudioStream(
        self, request: comms_pb2.AudioStreamRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> None:
        await self._open("audio", context)
        self.audio_requests.append(request)
        with self.noting_cancel("audio"):
            while (packet := await self.audio_out.get()) is not None:
                await context.write(packet)

    @contextlib.contextmanager
    def noting_cancel(self, kind: str) -> Iterator[None]:
        try:
            yield
        except asyncio.CancelledError:
            self.cancelled.append(kind)
            raise

    async def exchange(self, *requests: Status) -> list[comms_pb2.DeviceStatusResponse]:
        """Send status requests back to back, then collect one answer per request."""
        for request in requests:
            self.status_out.put_nowait(request)
        return [await asyncio.wait_for(self.status_in.get(), 5) for _ in requests]

    def send_audio(self, packets: list[Packet]) -> None:
        for packet in packets:
            self.audio_out.put_nowait(packet)


Scenario = Callable[[FakeDeviceService, str], Awaitable[None]]


def run(scenario: Scenario) -> None:
    """Start a fake server on a free port, run the scenario against it, stop everything."""

    async def main() -> None:
        service = FakeDeviceService()
        server = grpc.aio.server()
        comms_pb2_grpc.add_DeviceServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with asyncio.timeout(SCENARIO_TIMEOUT):
                await scenario(service, f"127.0.0.1:{port}")
        finally:
            await server.stop(None)

    asyncio.run(main())


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def settle(service: FakeDeviceService) -> None:
    """A status round trip on the same connection: whatever the device was going to do by now, it did."""
    await service.exchange(GET)
    await asyncio.sleep(0.05)


def device(target: str, **kwargs: object) -> SimulatedDevice:
    return SimulatedDevice(target, "kitchen", play_in_real_time=False, **kwargs)  # type: ignore[arg-type]


# -- StatusStream --------------------------------------------------------------------------------


def test_get_reports_the_six_leds_with_full_intensity() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            [answer] = await service.exchange(GET)
        assert answer.WhichOneof("response") == "state"
        state = answer.state
        colours = [state.led_0, state.led_1, state.led_2, state.led_3, state.led_4, state.led_5]
        assert [c.rgba for c in colours] == [reported(POWER_ON)] + [0x000000FF] * 5
        assert dev.gets_received == 1

    run(scenario)


def test_the_device_sends_nothing_first_on_status_stream() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target):
            await eventually(lambda: len(service.opened) == 3)
            await asyncio.sleep(0.1)
            assert service.status_in.empty()

    run(scenario)


def test_set_applies_led_1_to_5_at_once_ignores_led_0_and_unset_is_off() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            await service.exchange(set_leds(led_1=0x11111111, led_2=0x22222222, led_4=0x44444444))
            answers = await service.exchange(set_leds(led_0=0x12345678, led_1=0xAA000080, led_3=0x0000FF10))
            assert [a.status for a in answers] == ["success"]
            assert dev.leds == (POWER_ON, 0xAA000080, 0, 0x0000FF10, 0, 0)
            [answer] = await service.exchange(GET)
        assert answer.state.led_0.rgba == reported(POWER_ON)
        assert answer.state.led_1.rgba == 0xAA0000FF
        assert answer.state.led_3.rgba == 0x0000FFFF
        assert [leds for _, leds in dev.led_history] == [
            (POWER_ON, 0x11111111, 0x22222222, 0, 0x44444444, 0),
            (POWER_ON, 0xAA000080, 0, 0x0000FF10, 0, 0),
        ]
        assert dev.sets_received == 2

    run(scenario)


def test_requests_are_answered_one_each_in_order() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target):
            answers = await service.exchange(GET, set_leds(led_2=0x00FF00FF), GET, set_leds())
        assert [a.WhichOneof("response") for a in answers] == ["state", "status", "state", "status"]
        assert answers[0].state.led_2.rgba == 0x000000FF
        assert answers[2].state.led_2.rgba == 0x00FF00FF
        assert answers[3].status == "success"

    run(scenario)


def test_injected_set_failure_is_answered_with_an_error_and_not_applied() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            dev.fail_next_sets = 1
            [failed] = await service.exchange(set_leds(led_1=0xFF0000FF))
            assert failed.status == "error: injected failure"
            assert dev.leds[1] == 0
            assert dev.fail_next_sets == 0
            [ok] = await service.exchange(set_leds(led_1=0xFF0000FF))
            assert ok.status == "success"
            assert dev.leds[1] == 0xFF0000FF
            assert dev.sets_received == 2

    run(scenario)


def test_wait_for_first_set_returns_the_leds_after_it() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            waiter = asyncio.create_task(dev.wait_for_first_set(5))
            await service.exchange(set_leds(led_5=0x0000FFFF))
            assert (await waiter)[5] == 0x0000FFFF
            assert await dev.wait_for_leds(lambda leds: leds[5] == 0x0000FFFF, 1) == dev.leds

    run(scenario)


# -- EventStream ---------------------------------------------------------------------------------


def test_press_blocks_until_its_ack_and_only_one_event_is_in_flight() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        service.ack_gate.clear()
        async with device(target) as dev:
            first = asyncio.create_task(dev.press(Button.MODE))
            second = asyncio.create_task(dev.press(Button.PLAY))
            received = await asyncio.wait_for(service.events_in.get(), 5)
            assert received.button_event.button_id == comms_pb2.ButtonEvent.BUTTON_2
            await settle(service)
            assert not first.done()
            assert not second.done()
            assert service.events_in.empty()
            assert dev.pending_events == 2
            service.ack_gate.set()
            assert await first is True
            assert await second is True
            assert (await service.events_in.get()).button_event.button_id == comms_pb2.ButtonEvent.BUTTON_4
            assert dev.acks == [True, True]
            assert dev.events_sent == 2

    run(scenario)


def test_raw_events_get_the_servers_answer() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            assert await dev.send_event(button_event(7)) is False
            assert await dev.send_event(comms_pb2.DeviceEvent()) is False
            unknown = await service.events_in.get()
            empty = await service.events_in.get()
        assert unknown.button_event.button_id == 7
        assert empty.WhichOneof("event") is None

    run(scenario)


def test_presses_made_while_disconnected_are_delivered_after_connect() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        dev = device(target)
        first = asyncio.create_task(dev.press(Button.MODE))
        second = asyncio.create_task(dev.press(Button.STOP))
        await asyncio.sleep(0.05)
        assert dev.pending_events == 2
        assert not first.done()
        async with dev:
            assert await first is True
            assert await second is True
        ids = [(await service.events_in.get()).button_event.button_id for _ in range(2)]
        assert ids == [comms_pb2.ButtonEvent.BUTTON_2, comms_pb2.ButtonEvent.BUTTON_3]

    run(scenario)


def test_an_event_in_flight_at_disconnect_is_lost() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        service.ack_gate.clear()
        dev = device(target)
        await dev.connect()
        press = asyncio.create_task(dev.press(Button.PLAY))
        await service.events_in.get()
        await dev.disconnect()
        with pytest.raises(EventLostError):
            await press

    run(scenario)


# -- ServerAudioStream ---------------------------------------------------------------------------


def test_a_recording_decodes_every_packet_start_and_end_included() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            service.send_audio(clip(5))
            [recording] = await dev.wait_for_recordings(1, 5)
        assert service.audio_requests == [comms_pb2.AudioStreamRequest(start=True)]
        assert recording.complete
        assert len(recording.packets) == len(recording.arrivals) == 5
        assert len(recording.pcm) == 5 * FRAME_SAMPLES
        assert recording.duration == pytest.approx(0.1)
        assert recording.pcm.dtype == np.int16
        assert dev.audio_error is None

    run(scenario)


def test_packets_with_no_recording_open_are_ignored() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            service.send_audio([Packet(data=opus_frames(1)[0]), *clip(2)])
            [recording] = await dev.wait_for_recordings(1, 5)
        assert dev.packets_ignored == 1
        assert len(recording.packets) == 2
        assert dev.audio_error is None

    run(scenario)


def test_a_new_start_keeps_the_open_recording_as_incomplete() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            service.send_audio([*clip(3)[:2], *clip(3)])
            await dev.wait_for_recordings(1, 5)
        assert [r.complete for r in dev.recordings] == [False, True]
        assert len(dev.recordings[0].packets) == 2
        assert dev.audio_error is None

    run(scenario)


def test_an_end_with_no_recording_open_kills_the_audio_loop() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            service.send_audio([Packet(is_end=True, data=opus_frames(1)[0]), *clip(3)])
            with pytest.raises(AudioLoopError):
                await dev.wait_for_recordings(1, 5)
            await settle(service)
            assert dev.audio_packets_received == 1
        assert dev.audio_error is not None
        assert "is_end" in dev.audio_error
        assert dev.recordings == []

    run(scenario)


def test_data_the_decoder_rejects_kills_the_audio_loop() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            service.send_audio([Packet(is_start=True, data=b"\xff\xff\xff\xff\xff"), *clip(3)])
            with pytest.raises(AudioLoopError):
                await dev.wait_for_recordings(1, 5)
            await settle(service)
            assert dev.audio_packets_received == 1
        assert dev.audio_error is not None
        assert "decoder" in dev.audio_error
        assert [r.complete for r in dev.recordings] == [False]

    run(scenario)


def test_an_empty_packet_is_decoded_as_120_ms_of_concealment() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            first, last = clip(2)
            service.send_audio([first, Packet(), last])
            [recording] = await dev.wait_for_recordings(1, 5)
        assert len(recording.pcm) == 2 * FRAME_SAMPLES + CONCEALMENT_SAMPLES
        assert dev.audio_error is None

    run(scenario)


def test_real_time_playback_reads_nothing_while_a_clip_plays() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        dev = SimulatedDevice(target, "kitchen")
        async with dev:
            service.send_audio([*clip(10), *clip(2)])
            first, second = await dev.wait_for_recordings(2, 5)
        assert first.duration == pytest.approx(0.2)
        assert second.arrivals[0] - first.arrivals[-1] >= first.duration - 0.01

    run(scenario)


def test_save_wav_writes_48k_mono_16_bit(tmp_path: Path) -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target) as dev:
            service.send_audio(clip(3))
            [recording] = await dev.wait_for_recordings(1, 5)
        path = recording.save_wav(tmp_path / "clip.wav")
        with wave.open(str(path), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SAMPLE_RATE)
            assert wav.getnframes() == 3 * FRAME_SAMPLES
            assert np.array_equal(np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), recording.pcm)

    run(scenario)


# -- connection ----------------------------------------------------------------------------------


def test_disconnect_turns_led_0_and_led_1_off_and_cancels_the_three_calls() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        dev = device(target)
        async with dev:
            await service.exchange(set_leds(**{f"led_{i}": 0x10101000 + i for i in range(1, 6)}))
            await eventually(lambda: len(service.opened) == 3)
        assert dev.leds == (0, 0, 0x10101002, 0x10101003, 0x10101004, 0x10101005)
        await eventually(lambda: len(service.cancelled) == 3)
        assert sorted(service.cancelled) == ["audio", "events", "status"]
        assert dev.stream_errors == {}
        assert not dev.connected

    run(scenario)


def test_reconnect_opens_new_streams_with_the_power_led_on_again() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        dev = device(target)
        async with dev:
            service.send_audio(clip(2)[:1])  # left open: the next connection has a fresh decoder and state
            await eventually(lambda: len(dev.recordings) == 1 and len(service.opened) == 3)
        await eventually(lambda: len(service.cancelled) == 3)  # the old handlers no longer take packets
        async with dev:
            assert dev.leds[0] == POWER_ON
            service.send_audio(clip(2))
            await dev.wait_for_recordings(1, 5)
            await eventually(lambda: len(service.opened) == 6)
        assert [(r.connection, r.complete) for r in dev.recordings] == [(1, False), (2, True)]
        assert sorted(service.opened) == sorted([(k, "kitchen") for k in ("status", "events", "audio")] * 2)

    run(scenario)


def test_a_stream_the_server_aborts_is_reported_and_presses_then_fail() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        service.abort_on_open["events"] = (grpc.StatusCode.ABORTED, "a newer connection took over")
        async with device(target) as dev:
            end = await dev.wait_for_stream_end("events", 5)
            assert end == (grpc.StatusCode.ABORTED, "a newer connection took over")
            with pytest.raises(EventLostError):
                await dev.press(Button.MODE)
            await settle(service)
        assert dev.stream_errors == {"events": end}

    run(scenario)


def test_an_answer_racing_with_the_servers_end_still_reports_the_servers_status() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        service.status_burst_then_abort = (50, grpc.StatusCode.ABORTED, "a newer connection took over")
        async with device(target) as dev:
            end = await dev.wait_for_stream_end("status", 5)
        assert end == (grpc.StatusCode.ABORTED, "a newer connection took over")

    run(scenario)


def test_metadata_given_explicitly_replaces_the_device_id() -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        async with device(target, metadata=[("x-other", "1")]) as dev:
            ends = [await dev.wait_for_stream_end(kind, 5) for kind in ("status", "events", "audio")]
        assert {code for code, _ in ends} == {grpc.StatusCode.INVALID_ARGUMENT}
        assert set(dev.stream_errors) == {"status", "events", "audio"}

    run(scenario)


def test_connect_fails_clearly_when_nothing_listens() -> None:
    async def scenario() -> None:
        with pytest.raises(ConnectionError, match="cannot reach"):
            await SimulatedDevice(f"127.0.0.1:{closed_port()}", connect_timeout=0.3).connect()

    asyncio.run(scenario())


# -- command line --------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_cli_runs_a_script_prints_what_happens_and_saves_recordings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        def ack(event: comms_pb2.DeviceEvent) -> bool:
            if event.button_event.button_id == comms_pb2.ButtonEvent.BUTTON_4:
                service.send_audio(clip(4))
            return True

        async def ack_once_the_leds_are_set() -> None:
            await service.status_in.get()
            service.ack_gate.set()

        service.ack_for = ack
        service.status_out.put_nowait(set_leds(led_1=0xFF000080))
        service.ack_gate.clear()
        gate = asyncio.create_task(ack_once_the_leds_are_set())
        argv = ["--target", target, "--id", "kitchen", "mode", "play", "wait", "--save", str(tmp_path)]
        assert await asyncio.to_thread(main, [*argv, "--no-realtime-playback"]) == 0
        await gate

    run(scenario)
    out = capsys.readouterr().out
    assert "leds  00FF00FF FF000080 00000000 00000000 00000000 00000000" in out
    assert "mode -> ack=True" in out
    assert "play -> ack=True" in out
    assert "recording 1: 0.080 s, 4 packets" in out
    with wave.open(str(tmp_path / "kitchen-1.wav"), "rb") as wav:
        assert wav.getnframes() == 4 * FRAME_SAMPLES


def test_cli_fails_when_the_audio_loop_dies(capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario(service: FakeDeviceService, target: str) -> None:
        service.send_audio([Packet(is_end=True, data=opus_frames(1)[0])])
        assert await asyncio.to_thread(main, ["--target", target, "wait", "--timeout", "5"]) == 1

    run(scenario)
    assert "audio loop died" in capsys.readouterr().err


def test_cli_fails_when_the_server_cannot_be_reached(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--target", f"127.0.0.1:{closed_port()}", "--connect-timeout", "0.3", "mode"])
    assert code == 1
    assert "cannot reach the server" in capsys.readouterr().err


def test_cli_rejects_unknown_actions() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--target", "127.0.0.1:1", "dance"])
    assert exit_info.value.code == 2
