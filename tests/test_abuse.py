"""Devices that misbehave: each gets a clear answer, and everyone else is served as before."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from media.library import SoundLibrary
from rpc import comms_pb2 as pb
from rpc.server import MAX_MESSAGE_BYTES
from simulator import Button, SimulatedDevice
from tests.live import run, serving, target


def test_a_device_flooding_events_is_acked_false_past_its_rate_and_others_keep_their_latency(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with serving(library, event_rate=20.0, event_burst=10) as plane:
            flooder = SimulatedDevice(target(plane), "flooder", play_in_real_time=False)
            calm = SimulatedDevice(target(plane), "calm", play_in_real_time=False)
            await flooder.connect()
            await calm.connect()
            await calm.wait_for_first_set(5)

            async def flood() -> list[bool]:
                return [await flooder.press(Button.MODE) for _ in range(400)]

            flooding = asyncio.ensure_future(flood())
            latencies = []
            while not flooding.done():
                started = time.monotonic()
                assert await calm.press(Button.STOP)
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.02)
            acks = await flooding
            assert 10 <= acks.count(True) < 100, "the burst and the rate pass, the rest is refused"
            assert acks.count(False) > 300
            assert max(latencies) < 0.05, f"the calm device waited {max(latencies) * 1000:.0f} ms"
            await asyncio.sleep(0.6)
            assert await flooder.press(Button.MODE), "a device that slows down is served again"
            await flooder.disconnect()
            await calm.disconnect()

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
                "/com.opalcamera.test.DeviceService/StatusStream",
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
                "/com.opalcamera.test.DeviceService/EventStream",
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
