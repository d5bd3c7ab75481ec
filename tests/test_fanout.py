"""Announcements to many devices over real gRPC: every one starts, each outcome is reported, one log
line; packets grow under load and still decode like the sound; shedding ends the newest streams."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from media.library import SoundLibrary
from media.opus import SAMPLE_RATE, decode_packets
from media.repacketize import packet_samples
from simulator import Button, SimulatedDevice
from tests.admin_live import Operated, operated
from tests.background import BackgroundLoop
from tests.live import run

FLEET = 40
T = TypeVar("T")


async def connect_fleet(op: Operated, count: int) -> list[SimulatedDevice]:
    devices = [op.device(f"dev-{index:02d}") for index in range(count)]
    await asyncio.gather(*(device.connect() for device in devices))
    async with asyncio.timeout(20):
        while sum(bool(entry["connected"]) for entry in await listed(op)) < count:
            await asyncio.sleep(0.05)
    return devices


async def listed(op: Operated) -> list[dict[str, object]]:
    response = await op.http.get("/api/devices", params={"limit": 1000})
    devices: list[dict[str, object]] = response.json()["devices"]
    return devices


def test_an_announcement_to_many_devices_starts_all_reports_each_outcome_and_logs_one_line(
    library: SoundLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            devices = await connect_fleet(op, FLEET)
            await asyncio.sleep(1.5)  # the fleet idles: its connect storm is over
            with caplog.at_level(logging.INFO):
                caplog.clear()
                response = await op.post("/api/announce", {"sound": "builtin-2", "target": {"all": True}})
                announced = [record for record in caplog.records if "announcement" in record.getMessage()]
                per_device = [record for record in caplog.records if "dev-" in record.getMessage()]
            assert response.status_code == 200
            body = response.json()
            assert body["results"] == {device.device_id: "started" for device in devices}
            assert body["counts"]["started"] == FLEET
            assert len(announced) == 1, "one line with the counts"
            assert "'started': 40" in announced[0].getMessage()
            assert per_device == [], "not a line per device"
            expected = decode_packets(library.for_mode(2).packets)
            for device in devices:
                [recording] = await device.wait_for_recordings(1, 15)
                assert recording.complete
                assert np.array_equal(recording.pcm, expected), f"{device.device_id} heard the whole sound"
            starts = [device.completed_recordings[0].started_at for device in devices]
            assert max(starts) - min(starts) < 2.0, "all started within a short window"
            await asyncio.gather(*(device.disconnect() for device in devices))

    run(scenario)


def test_under_load_packets_grow_mid_clip_and_the_clip_decodes_exactly_like_the_sound(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await kitchen.press(Button.MODE)
            await kitchen.press(Button.PLAY)  # mode 1: the 32 s sound
            async with asyncio.timeout(10):
                while not kitchen.recordings or len(kitchen.recordings[0].packets) < 20:
                    await asyncio.sleep(0.02)
            admission = op.plane.admission
            for _ in range(admission.policy.late_ticks):  # the pacing fell behind: the largest packets
                admission.observe_lateness(1.0)
            assert admission.frames_per_packet() == 6
            async with asyncio.timeout(10):
                while len(kitchen.recordings[0].packets) < 60:
                    await asyncio.sleep(0.02)
            await kitchen.press(Button.STOP)
            [recording] = await kitchen.wait_for_recordings(1, 10)
            sizes = [packet_samples(packet.data) * 1000 // SAMPLE_RATE for packet in recording.packets[:-1]]
            assert sizes[0] == 20, "an idle server starts with 20 ms packets"
            assert 120 in sizes, "then 120 ms packets"
            frames = library.for_mode(1).packets
            heard = recording.pcm[: len(recording.pcm) - 960]  # the end packet after Stop is silence
            assert np.array_equal(heard, decode_packets(frames)[: len(heard)]), "no gap, no seam"
            assert all(
                packet_samples(packet.data) == len(pcm)
                for packet, pcm in zip(recording.packets, recording._chunks, strict=True)
            ), "every packet decodes to the duration its TOC byte says"

    run(scenario)


def test_streams_that_fall_behind_at_the_largest_packets_shed_the_newest_which_show_busy(
    library: SoundLibrary,
) -> None:
    """The devices run on a loop of their own, so they keep reading while the server's is held."""
    devices_loop = BackgroundLoop("devices")

    async def on_devices(coroutine: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, devices_loop.loop))

    async def scenario() -> None:
        async with operated(library, modes=5) as op:
            devices = [op.device(f"dev-{index:02d}") for index in range(10)]
            for device in devices:  # oldest first: one by one, into mode 1 (32 s) and playing
                await on_devices(device.connect())
                assert await on_devices(device.press(Button.MODE))
                assert await on_devices(device.press(Button.PLAY))
            async with asyncio.timeout(10):
                while op.plane.admission.active < 10:
                    await asyncio.sleep(0.02)
            # A noisy neighbour: the server's loop is held 150 ms at a time, longer than a
            # 120 ms packet, so every tick finds packets overdue.
            deadline = time.monotonic() + 6.0
            while time.monotonic() < deadline and op.plane.admission.ceiling is None:
                time.sleep(0.15)  # noqa: ASYNC251 - holding the loop is the fault injected
                await asyncio.sleep(0)
            assert op.plane.admission.ceiling is not None, "the transport shed streams"
            newest = devices[-1]
            async with asyncio.timeout(10):
                while (await op.device_json(newest.device_id))["status"] != "busy":
                    await asyncio.sleep(0.05)
            [shed] = await on_devices(newest.wait_for_recordings(1, 10))
            assert shed.complete, "the shed stream was closed with is_end"
            assert (await op.device_json(devices[0].device_id))["status"] == "playing", "the oldest plays on"
            for device in devices:
                await on_devices(device.disconnect())

    try:
        run(scenario)
    finally:
        devices_loop.close()
