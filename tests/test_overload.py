"""Past its capacity the server refuses the newest work quickly instead of serving everyone late.

Real gRPC on loopback, simulated devices; the capacity is configured small so that a test
reaches it with two devices (the benchmark measures the real one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pykka
import pytest

from actors.leds import STATUS_BUSY, STATUS_IDLE
from actors.messages import OpenStream, StreamKind, StreamRefused
from media.library import SoundLibrary
from rpc.gateway import FleetGateway
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.live import TEST_CONFIG, run, serving, target


def device(plane: object, device_id: str) -> SimulatedDevice:
    return SimulatedDevice(target(plane), device_id, play_in_real_time=False)  # type: ignore[arg-type]


@asynccontextmanager
async def one_stream_playing(
    library: SoundLibrary,
) -> AsyncIterator[tuple[ControlPlane, SimulatedDevice, SimulatedDevice]]:
    """A server whose budget is one stream, and kitchen streaming the long sound in it; hall idle."""
    async with serving(library, max_streams=1) as plane:
        kitchen, hall = device(plane, "kitchen"), device(plane, "hall")
        await kitchen.connect()
        await hall.connect()
        assert await kitchen.press(Button.MODE)  # mode 1: the 32-second sound
        assert await kitchen.press(Button.PLAY)
        try:
            yield plane, kitchen, hall
        finally:
            await kitchen.disconnect()
            await hall.disconnect()


async def led_1_shows(dev: SimulatedDevice, rgba: int, timeout: float = 5) -> None:
    await dev.wait_for_leds(lambda leds: leds[1] >> 8 == rgba >> 8, timeout)


def test_a_play_beyond_max_streams_is_acked_false_shows_busy_and_the_playing_stream_goes_on(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with one_stream_playing(library) as (plane, kitchen, hall):
            assert not await hall.press(Button.PLAY)
            await led_1_shows(hall, STATUS_BUSY.rgba)
            await led_1_shows(hall, STATUS_IDLE.rgba)
            assert hall.recordings == []
            assert hall.audio_packets_received == 0
            assert await kitchen.press(Button.STOP)  # Stop is honoured at once and frees the place
            [recording] = await kitchen.wait_for_recordings(1, 5)
            assert recording.packets[-1].is_end
            assert await hall.press(Button.PLAY)
            await hall.wait_for_recordings(1, 10)
            metrics = plane.metrics.registry.get_sample_value("acp_playbacks_total", {"outcome": "refused"})
            assert metrics == 1

    run(scenario)


def test_refusals_are_logged_once_per_burst(library: SoundLibrary, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with one_stream_playing(library) as (_, _, hall):
            for _ in range(5):
                assert not await hall.press(Button.PLAY)

    with caplog.at_level(logging.WARNING, logger="media.admission"):
        run(scenario)
    assert [r.getMessage() for r in caplog.records if r.name == "media.admission"] == [
        "at audio capacity: refusing new streams (1 streaming, capacity 1, configured)"
    ]


class Unanswering(pykka.ThreadingActor):
    """A supervisor too busy to answer: every open it is asked waits."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[OpenStream] = []

    def on_receive(self, message: Any) -> None:
        if isinstance(message, OpenStream):
            self.asked.append(message)


def test_a_connect_storm_beyond_what_is_answered_in_time_is_refused_at_once() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        supervisor = Unanswering.start()
        gateway = FleetGateway(supervisor, loop, connect_queue_limit=0.05)
        waiting = loop.create_task(gateway.open_stream("kitchen", "ipv4:127.0.0.1:1", StreamKind.STATUS))
        await asyncio.sleep(0)
        assert not gateway.shedding()
        async with asyncio.timeout(5):
            while not gateway.shedding():
                await asyncio.sleep(0.01)
        started = loop.time()
        refused = await gateway.open_stream("hall", "ipv4:127.0.0.1:2", StreamKind.STATUS)
        assert loop.time() - started < 0.01
        assert isinstance(refused, StreamRefused)
        assert "busy" in refused.reason
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert not gateway.shedding()  # the given-up open no longer counts
        supervisor.stop()

    run(scenario)


def test_an_open_the_supervisor_never_got_does_not_hold_back_later_connects() -> None:
    async def scenario() -> None:
        supervisor = Unanswering.start()
        supervisor.stop()
        gateway = FleetGateway(supervisor, asyncio.get_running_loop(), connect_queue_limit=0.0)
        with pytest.raises(pykka.ActorDeadError):
            await gateway.open_stream("kitchen", "ipv4:127.0.0.1:1", StreamKind.STATUS)
        await asyncio.sleep(0.01)
        assert not gateway.shedding()

    run(scenario)


def test_the_streams_cpu_share_setting_reaches_admission_control(library: SoundLibrary) -> None:
    plane = ControlPlane(replace(TEST_CONFIG, stream_cpu_percent=70), library)
    plane.store.close()
    assert plane.admission.policy.busy_target == pytest.approx(0.7)


def test_elastic_packets_off_keeps_every_stream_at_one_frame_per_packet(library: SoundLibrary) -> None:
    plane = ControlPlane(replace(TEST_CONFIG, elastic_packets=False), library)
    plane.store.close()
    assert plane.admission.policy.max_frames == 1
    plane = ControlPlane(TEST_CONFIG, library)
    plane.store.close()
    assert plane.admission.policy.max_frames == 120 // library.frame_ms
