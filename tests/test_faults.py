"""Faults that hit a running fleet: a device process killed mid-stream, an exception inside a device actor."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from actors import state as device_state
from actors.leds import STATUS_ERROR, STATUS_IDLE, mode_leds
from actors.state import ButtonInput, DeviceState, Transition
from media.library import SoundLibrary
from simulator import Button, SimulatedDevice
from tests.live import fleet_status, run, serving, shows, target, wait_for_fleet

ROOT = Path(__file__).resolve().parent.parent


def test_a_device_process_killed_mid_stream_is_retired_with_its_state_kept(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library) as plane:
            device = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "simulator",
                "--target",
                target(plane),
                "--id",
                "doomed",
                "--no-realtime-playback",
                "mode",
                "mode",
                "play",
                "sleep=30",
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await wait_for_fleet(plane, lambda status: status.connected == 1, timeout=10)
            await asyncio.sleep(1.0)
            assert plane.metrics.audio_packets_sent > 0, "it was streaming"
            os.kill(device.pid, signal.SIGKILL)
            await device.wait()
            await wait_for_fleet(plane, lambda status: status.connected == 0, timeout=10)
            assert plane.store.load("doomed") == DeviceState(mode=2, next_playback_id=2)
            async with SimulatedDevice(target(plane), "doomed", play_in_real_time=False) as again:
                await again.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)

    run(scenario)


def test_an_exception_inside_a_device_actor_is_survived_and_the_device_keeps_working(
    library: SoundLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = device_state.on_button
    failures = {"left": 1}

    def failing_once(state: DeviceState, event: ButtonInput, modes: int) -> Transition:
        if event.button is device_state.Button.PLAY and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("injected fault in the device actor")
        return real(state, event, modes)

    monkeypatch.setattr(device_state, "on_button", failing_once)

    async def scenario() -> None:
        async with (
            serving(library) as plane,
            SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as dev,
        ):
            assert await dev.press(Button.MODE)
            assert not await dev.press(Button.PLAY), "the failed event is acked false, never left unanswered"
            await dev.wait_for_leds(shows((STATUS_ERROR.rgba, *mode_leds(1))), 5)
            assert (await fleet_status(plane)).restarts == 1
            assert await dev.press(Button.MODE), "the restarted actor kept the mode and serves the device"
            await dev.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
            assert await dev.press(Button.PLAY)
            [recording] = await dev.wait_for_recordings(1, 10)
            assert recording.complete
            assert dev.stream_errors == {}

    run(scenario)
