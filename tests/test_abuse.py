"""Devices that misbehave: each gets a clear answer, and everyone else is served as before."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from actors.leds import STATUS_IDLE, mode_leds
from media.library import SoundLibrary
from rpc import comms_pb2 as pb
from rpc.registration import SERVICE_NAME
from rpc.server import MAX_MESSAGE_BYTES, ControlPlane
from simulator import Button, SimulatedDevice, StreamEnd, button_event
from simulator.call_status import peek_status
from tests.live import run, serving, shows, target


class Flooder:
    """A client that writes events back to back without waiting for their acks, and reads acks as they come.

    It writes ``count`` events and then only reads: the server's reading pace, not the client's CPU, sets
    how fast events are handled, and the in-process test keeps one loop free for the other devices.
    """

    def __init__(self, plane: ControlPlane, device_id: str, count: int) -> None:
        self._target = target(plane)
        self._device_id = device_id
        self._count = count
        self.written = 0
        self.acks: list[bool] = []
        self.ack_times: list[float] = []
        self.end: StreamEnd | None = None
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Flooder:
        self._channel = grpc.aio.insecure_channel(self._target)
        events = self._channel.stream_stream(
            f"/{SERVICE_NAME}/EventStream",
            request_serializer=pb.DeviceEvent.SerializeToString,
            response_deserializer=pb.DeviceEventResponse.FromString,
        )
        self._call: Any = events(metadata=(("device_id", self._device_id),))
        self._call.add_done_callback(self._ended)
        self._tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._read())]
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        self._call.cancel()
        await self._channel.close()

    async def _write(self) -> None:
        event = button_event(Button.MODE)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            for _ in range(self._count):
                await self._call.write(event)
                self.written += 1
                self._notify()

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            while (response := await self._call.read()) is not grpc.aio.EOF:
                self.acks.append(response.ack)
                self.ack_times.append(time.monotonic())
                self._notify()

    def _ended(self, call: object) -> None:
        self.end = peek_status(call)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                await self._changed.wait()


def _counter(plane: ControlPlane, name: str) -> float:
    return plane.metrics.registry.get_sample_value(name) or 0.0


def _events_handled(plane: ControlPlane) -> float:
    labels = {"button": "mode", "type": "press"}
    return plane.metrics.registry.get_sample_value("acp_device_events_total", labels) or 0.0


def test_a_device_flooding_events_is_read_no_faster_than_its_rate(library: SoundLibrary) -> None:
    rate, burst, seconds = 20.0, 10, 1.5

    async def scenario() -> None:
        async with (
            serving(library, event_rate=rate, event_burst=burst) as plane,
            Flooder(plane, "flooder", count=2000) as flooder,
        ):
            await flooder.wait_until(lambda: flooder.written == 2000, 10)
            expected = burst + int(rate * seconds)
            await flooder.wait_until(lambda: len(flooder.acks) >= expected, 10)
            elapsed = flooder.ack_times[expected - 1] - flooder.ack_times[0]
            assert elapsed >= 0.75 * seconds, f"{expected} events answered in {elapsed:.2f} s"
            assert _events_handled(plane) <= len(flooder.acks) + 1, "nothing is read ahead of its turn"
            assert all(flooder.acks), "a throttled event is handled normally"
            assert flooder.end is None, "the device is slowed down, not cut off"

    run(scenario)


def test_another_devices_press_stays_fast_while_one_floods(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with (
            serving(library, event_rate=20.0, event_burst=10) as plane,
            Flooder(plane, "flooder", count=2000) as flooder,
            SimulatedDevice(target(plane), "calm", play_in_real_time=False) as calm,
        ):
            await calm.wait_for_first_set(5)
            await flooder.wait_until(lambda: flooder.written == 2000, 10)
            latencies = []
            for _ in range(80):  # about 15 presses a second: within the calm device's own rate
                started = time.monotonic()
                assert await calm.press(Button.STOP)
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.06)
            assert len(flooder.acks) < 2000, "the flood went on throughout"
            p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1]
            assert p99 < 0.05, f"the calm device's p99 press->ack was {p99 * 1000:.0f} ms"

    run(scenario)


def test_a_device_that_stays_over_its_rate_has_its_event_stream_ended_with_one_log_line(
    library: SoundLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    rate, burst, abuse = 20.0, 10, 0.5

    async def scenario() -> None:
        async with (
            serving(library, event_rate=rate, event_burst=burst, event_abuse_seconds=abuse) as plane,
            Flooder(plane, "flooder", count=2000) as flooder,
        ):
            await flooder.wait_until(lambda: flooder.end is not None, 10)
            assert flooder.end is not None
            code, details = flooder.end
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "over the event rate of 20/s for more than 0.5 s" in details
            assert _counter(plane, "acp_event_floods_ended_total") == 1
            assert all(flooder.acks), "what was handled before was handled normally"
            assert len(flooder.acks) <= burst + 2 * rate * abuse, (
                "about the burst and the rate, not the flood"
            )

    with caplog.at_level(logging.INFO, logger="rpc.servicer"):
        run(scenario)
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    assert getattr(warnings[0], "device_id", None) == "flooder"
    assert "over the event rate" in warnings[0].getMessage()


def test_a_device_that_bursts_briefly_past_its_rate_gets_every_event_acked_true_in_order(
    library: SoundLibrary,
) -> None:
    burst, over = 3, 3

    async def scenario() -> None:
        async with (
            serving(library, event_rate=2.0, event_burst=burst) as plane,
            SimulatedDevice(target(plane), "bursty", play_in_real_time=False) as bursty,
        ):
            await bursty.wait_for_first_set(5)
            acks = [await bursty.press(Button.MODE) for _ in range(burst + over)]
            assert acks == [True] * (burst + over)
            assert _counter(plane, "acp_device_events_throttled_total") == over, "served slower, not refused"
            await bursty.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds((burst + over) % 5))), 5)

    run(scenario)


def test_a_throttled_event_stream_ends_at_once_when_a_newer_connection_takes_over(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with (
            serving(library, event_rate=0.2, event_burst=1) as plane,
            Flooder(plane, "taken", count=5) as flooder,
        ):
            await flooder.wait_until(lambda: len(flooder.acks) == 1, 10)
            async with asyncio.timeout(10):
                while _counter(plane, "acp_device_events_throttled_total") < 1:
                    await asyncio.sleep(0.01)
            started = time.monotonic()
            async with SimulatedDevice(target(plane), "taken", play_in_real_time=False) as newer:
                await flooder.wait_until(lambda: flooder.end is not None, 10)
                waited = time.monotonic() - started
                assert flooder.end is not None
                assert flooder.end[0] == grpc.StatusCode.ABORTED
                assert waited < 2.0, f"the takeover waited {waited:.1f} s for the 5 s token"
                assert await newer.press(Button.MODE)

    run(scenario)


def test_a_device_that_never_reads_its_audio_holds_a_bounded_buffer_and_others_play(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, grpc.aio.insecure_channel(target(plane)) as channel:
            stuck = SimulatedDevice(target(plane), "stuck", play_in_real_time=False)
            await stuck.connect()
            conn = stuck._conn
            assert conn is not None
            for task in conn.workers[2:]:
                task.cancel()  # the audio reader stops reading; the stream stays open
            assert await stuck.press(Button.MODE)
            assert await stuck.press(Button.PLAY)
            await asyncio.sleep(2.0)
            [link] = [link for link in plane._links if link.device_id == "stuck"]
            held = len(link.channel)
            assert held <= link.channel.capacity
            await asyncio.sleep(1.0)
            assert len(link.channel) <= link.channel.capacity, "the buffer does not grow"
            async with SimulatedDevice(target(plane), "listener", play_in_real_time=False) as listener:
                assert await listener.press(Button.PLAY)
                [recording] = await listener.wait_for_recordings(1, 10)
                assert recording.complete
            await stuck.disconnect()
            del channel

    run(scenario)


def test_an_oversized_message_is_refused_by_grpc_and_the_server_goes_on(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, grpc.aio.insecure_channel(target(plane)) as channel:
            status = channel.stream_stream(
                f"/{SERVICE_NAME}/StatusStream",
                request_serializer=pb.DeviceStatusResponse.SerializeToString,
                response_deserializer=pb.DeviceStatusRequest.FromString,
            )
            call: Any = status(metadata=(("device_id", "big"),))
            await call.read()
            await call.write(pb.DeviceStatusResponse(status="x" * (MAX_MESSAGE_BYTES + 1)))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            async with SimulatedDevice(target(plane), "fine", play_in_real_time=False) as fine:
                assert await fine.press(Button.MODE)

    run(scenario)


def test_bytes_that_are_not_a_message_fail_only_that_stream(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, grpc.aio.insecure_channel(target(plane)) as channel:
            events = channel.stream_stream(
                f"/{SERVICE_NAME}/EventStream",
                request_serializer=lambda raw: raw,
                response_deserializer=pb.DeviceEventResponse.FromString,
            )
            call: Any = events(metadata=(("device_id", "garbage"),))
            await call.write(b"\xff\xff\xff\xff\x0f not protobuf")
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call.read()
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid DeviceEvent" in (failed.value.details() or "")
            async with SimulatedDevice(target(plane), "fine", play_in_real_time=False) as fine:
                assert await fine.press(Button.MODE)

    run(scenario)


def test_devices_beyond_the_limit_are_refused_with_resource_exhausted(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library, max_devices=2) as plane:
            first = SimulatedDevice(target(plane), "first", play_in_real_time=False)
            second = SimulatedDevice(target(plane), "second", play_in_real_time=False)
            third = SimulatedDevice(target(plane), "third", play_in_real_time=False)
            for device in (first, second, third):
                await device.connect()
            code, details = await third.wait_for_stream_end("status", 5)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 2 devices" in details
            assert await first.press(Button.MODE)
            await first.disconnect()
            await third.disconnect()
            await asyncio.sleep(0.2)
            async with SimulatedDevice(target(plane), "third", play_in_real_time=False) as again:
                assert await again.press(Button.MODE), "a freed place is taken"
            await second.disconnect()

    run(scenario)
