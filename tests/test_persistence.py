"""Device state survives the server being killed (SIGKILL) at any moment, mid-churn."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from actors.leds import mode_leds
from simulator import Button, Leds, SimulatedDevice
from tests.server_process import ServerProcess

MODES = 5
DEVICES = 12


def mode_shown(leds: Leds) -> int:
    colours = [rgba >> 8 for rgba in leds[2:]]
    return next(mode for mode in range(MODES) if colours == [rgba >> 8 for rgba in mode_leds(mode)])


def test_every_acked_mode_survives_a_sigkill_mid_churn(tmp_path: Path) -> None:
    db = tmp_path / "devices.sqlite3"
    server = ServerProcess(tmp_path / "first.log", "--state-db", str(db), "--modes", str(MODES))
    port = server.port
    acked = {f"device-{n}": 0 for n in range(DEVICES)}
    in_flight = dict.fromkeys(acked, False)

    async def churn() -> None:
        devices = [SimulatedDevice(f"127.0.0.1:{port}", name, play_in_real_time=False) for name in acked]
        for device in devices:
            await device.connect()
            await device.wait_for_first_set(5)

        async def press_forever(device: SimulatedDevice) -> None:
            rng = random.Random(device.device_id)
            try:
                while True:
                    in_flight[device.device_id] = True
                    button = Button.MODE if rng.random() < 0.8 else rng.choice([Button.PLAY, Button.STOP])
                    if await device.press(button) and button is Button.MODE:
                        acked[device.device_id] += 1
                    in_flight[device.device_id] = False
                    await asyncio.sleep(rng.uniform(0, 0.01))
            except Exception:
                return

        tasks = [asyncio.create_task(press_forever(device)) for device in devices]
        await asyncio.sleep(random.uniform(1.0, 2.0))
        server.kill()
        await asyncio.sleep(0.3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for device in devices:
            await device.disconnect()

    asyncio.run(churn())
    assert sum(acked.values()) > DEVICES * 5, "the churn really churned"

    server = ServerProcess(tmp_path / "second.log", "--state-db", str(db), "--modes", str(MODES))
    port = server.port
    try:

        async def verify() -> None:
            for name, presses in acked.items():
                async with SimulatedDevice(f"127.0.0.1:{port}", name, play_in_real_time=False) as device:
                    leds = await device.wait_for_first_set(5)
                    shown = mode_shown(leds)
                    allowed = {presses % MODES}
                    if in_flight[name]:
                        allowed.add((presses + 1) % MODES)  # the press in flight may have landed unacked
                    assert shown in allowed, f"{name}: {presses} acked Mode presses, shows mode {shown}"

        asyncio.run(verify())
    finally:
        server.stop()
