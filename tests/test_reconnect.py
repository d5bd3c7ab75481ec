"""The simulator reconnects as firmware does: jittered exponential backoff, against the real server."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from actors.leds import STATUS_IDLE, mode_leds
from media.library import SoundLibrary
from simulator import Button, SimulatedDevice
from simulator.reconnect import Backoff, Reconnector
from tests.live import run, serving, shows, target
from tests.proxy import free_port


def test_each_wait_in_a_row_grows_by_1_8_up_to_a_minute() -> None:
    backoff = Backoff()
    ceilings = [backoff.delay(attempt, draw=0.0) for attempt in range(10)]
    assert ceilings[:4] == [1.0, 1.8, 1.8**2, 1.8**3]
    assert ceilings[-1] == 60.0
    assert all(later >= earlier for earlier, later in itertools.pairwise(ceilings))


def test_jitter_takes_off_at_most_half_of_a_wait() -> None:
    backoff = Backoff()
    assert backoff.delay(3, draw=0.999999) > backoff.delay(3, draw=0.0) / 2
    assert backoff.delay(3, draw=0.5) == 1.8**3 * 0.75


class QuickSleep:
    """Records the backoff waits and waits a few milliseconds instead."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0.02)


def test_a_device_whose_server_restarts_comes_back_in_its_mode(library: SoundLibrary, tmp_path: Path) -> None:
    port, state = free_port(), str(tmp_path / "state.db")

    async def scenario() -> None:
        async with serving(library, port=port, state_db=state) as plane:
            device = SimulatedDevice(target(plane), "kitchen", play_in_real_time=False, connect_timeout=0.2)
            sleep = QuickSleep()
            reconnector = Reconnector(device, draw=lambda: 0.0, sleep=sleep)
            reconnector.start()
            await device.wait_for_first_set(5)
            assert await device.press(Button.MODE)
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
        # The server is gone: the device keeps trying, each wait longer than the one before.
        async with asyncio.timeout(10):
            while len(sleep.asked) < 3:
                await asyncio.sleep(0.01)
        assert sleep.asked[:3] == [1.0, 1.8, 1.8**2]
        assert reconnector.losses == 1
        async with serving(library, port=port, state_db=state):
            await device.wait_for_first_set(10)
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
            assert await device.press(Button.MODE)
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
        await reconnector.stop()

    run(scenario)
