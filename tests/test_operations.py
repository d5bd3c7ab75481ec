"""What operators rely on: health checking, reflection, metrics, a graceful drain, JSON logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from actors.leds import STATUS_SERVER_LEAVING
from media.library import SoundLibrary
from rpc.healthcheck import main as healthcheck
from rpc.registration import SERVICE_NAME
from simulator import Button, SimulatedDevice
from tests.live import run, serving, target, wait_for_fleet
from tests.scrape import sample, scrape
from tests.server_process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


async def health_of(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the published stubs omit the RPC methods
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return int(response.status)


def test_health_is_serving_for_the_server_and_the_device_service(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            serving_status = health_pb2.HealthCheckResponse.SERVING
            assert await health_of(target(plane)) == serving_status
            assert await health_of(target(plane), SERVICE_NAME) == serving_status

    run(scenario)


def test_the_container_health_probe_reports_serving(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            assert await asyncio.to_thread(healthcheck, [target(plane)]) == 0
        assert await asyncio.to_thread(healthcheck, [target(plane)]) == 1

    run(scenario)


def test_health_turns_not_serving_while_the_server_drains(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            address = target(plane)
            async with SimulatedDevice(address, "kitchen", play_in_real_time=False) as device:
                await device.wait_for_first_set(5)
                stopping = asyncio.ensure_future(plane.stop(grace=2.0))
                seen = set()
                while not stopping.done():
                    try:
                        seen.add(await health_of(address, SERVICE_NAME))
                    except grpc.aio.AioRpcError:
                        break
                await stopping
                assert health_pb2.HealthCheckResponse.NOT_SERVING in seen

    run(scenario)


def test_reflection_lists_and_describes_the_device_service(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane, grpc.aio.insecure_channel(target(plane)) as channel:
            stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]  # stubs know sync channels only

            async def ask(
                request: reflection_pb2.ServerReflectionRequest,
            ) -> reflection_pb2.ServerReflectionResponse:
                answers = [answer async for answer in stub.ServerReflectionInfo(iter([request]))]
                assert len(answers) == 1
                response: reflection_pb2.ServerReflectionResponse = answers[0]
                return response

            listed = await ask(reflection_pb2.ServerReflectionRequest(list_services=""))
            names = {service.name for service in listed.list_services_response.service}
            assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
            described = await ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME))
            files = described.file_descriptor_response.file_descriptor_proto
            assert files
            assert any(b"StatusStream" in proto for proto in files)

    run(scenario)


def test_metrics_are_scraped_and_move_as_devices_act(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            assert plane.metrics_port is not None
            before = await asyncio.to_thread(scrape, plane.metrics_port)
            assert sample(before, "acp_connected_devices") == 0
            async with SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as device:
                await device.wait_for_first_set(5)
                assert await device.press(Button.MODE)
                assert await device.press(Button.MODE)
                assert await device.press(Button.PLAY)
                await device.wait_for_recordings(1, 10)
                assert not await device.press(Button.CONNECT)
                await asyncio.sleep(0.1)
                after = await asyncio.to_thread(scrape, plane.metrics_port)
            assert sample(after, "acp_connected_devices") == 1
            assert sample(after, "acp_open_streams", kind="audio") == 1
            assert sample(after, "acp_device_events_total", button="mode", type="press") == 2
            assert sample(after, "acp_device_events_nacked_total", reason="refused") == 1
            assert sample(after, "acp_playbacks_total", outcome="started") == 1
            assert sample(after, "acp_playbacks_total", outcome="completed") == 1
            packets = len(library.for_mode(2).packets)
            assert sample(after, "acp_audio_packets_sent_total") == packets
            assert sample(after, "acp_led_sets_total", result="sent") >= 3
            assert sample(after, "acp_button_to_led_seconds_count") >= 2
            assert sample(after, "acp_pacing_lateness_seconds_count") > 0
            assert sample(after, "process_resident_memory_bytes") > 0

    run(scenario)


def test_draining_during_playback_ends_the_stream_and_shows_the_leaving_leds(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            device = SimulatedDevice(target(plane), "kitchen", play_in_real_time=False)
            await device.connect()
            assert await device.press(Button.MODE)
            assert await device.press(Button.PLAY)
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await plane.stop(grace=3.0)
            assert time.monotonic() - started < 3.0
            [recording] = await device.wait_for_recordings(1, 2)
            assert recording.packets[-1].is_end
            assert device.leds[1] >> 8 == STATUS_SERVER_LEAVING.rgba >> 8
            code, _ = await device.wait_for_stream_end("audio", 2)
            assert code == grpc.StatusCode.UNAVAILABLE
            assert device.audio_error is None
            await device.disconnect()

    run(scenario)


def test_sigterm_during_playback_ends_streams_with_is_end_and_exits_within_the_grace(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server.log", "--grace", "4", "--log-format", "json")
    try:

        async def scenario() -> float:
            device = SimulatedDevice(server.target, "kitchen", play_in_real_time=False)
            await device.connect()
            assert await device.press(Button.MODE)
            assert await device.press(Button.PLAY)
            await asyncio.sleep(0.3)
            signalled = time.monotonic()
            server.process.terminate()
            [recording] = await device.wait_for_recordings(1, 4)
            assert recording.packets[-1].is_end
            assert device.audio_error is None
            assert await asyncio.to_thread(server.process.wait, 10) == 0
            await device.disconnect()
            return time.monotonic() - signalled

        assert asyncio.run(scenario()) < 4.0
        lines = [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]
        assert any(line.get("device_id") == "kitchen" for line in lines), "device lines carry device_id"
        assert any(line["message"] == "stopped" for line in lines)
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("connected", "logged"), [(0, "draining 0 devices"), (1, "draining 1 device "), (2, "draining 2 devices")]
)
def test_the_drain_log_counts_the_devices_connected(
    library: SoundLibrary, caplog: pytest.LogCaptureFixture, connected: int, logged: str
) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            devices = [
                SimulatedDevice(target(plane), f"device-{n}", play_in_real_time=False) for n in range(3)
            ]
            for dev in devices:
                await dev.connect()
                await dev.wait_for_first_set(5)
            for dev in devices[connected:]:
                await dev.disconnect()
            await wait_for_fleet(plane, lambda status: status.connected == connected and status.retiring == 0)
            with caplog.at_level(logging.INFO, logger="rpc.server"):
                await plane.stop(grace=1.0)
            for dev in devices[:connected]:
                await dev.disconnect()

    run(scenario)
    [line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("draining")]
    assert line.startswith(logged)
