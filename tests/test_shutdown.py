"""Stopping keeps every final state: the retire handshake completes before the actors stop, and
the store is flushed before it closes (real gRPC, a real SQLite file reopened afterwards)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actors.device import DeviceActor
from actors.messages import Retire
from actors.store import SqliteStateStore
from media.library import SoundLibrary
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.live import TEST_CONFIG, run, wait_for_fleet
from tests.server_process import ServerProcess

DEVICES = 24


async def press_many(device: SimulatedDevice, times: int) -> int:
    """The number of presses acked (each acked press is saved)."""
    acked = 0
    for _ in range(times):
        acked += await device.press(Button.MODE)
    return acked


def test_presses_acked_just_before_stop_and_every_final_state_are_in_the_store_afterwards(
    library: SoundLibrary, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"
    rng = random.Random(19)
    presses = {f"device-{number}": rng.randint(1, 7) for number in range(DEVICES)}

    async def scenario() -> None:
        plane = ControlPlane(replace(TEST_CONFIG, state_db=str(path)), library)
        await plane.start()
        target = f"127.0.0.1:{plane.port}"
        devices = [SimulatedDevice(target, device_id, play_in_real_time=False) for device_id in presses]
        try:
            for device in devices:
                await device.connect()
            await wait_for_fleet(plane, lambda status: status.connected == DEVICES, timeout=10)
            acked = await asyncio.gather(
                *(press_many(device, presses[device.device_id]) for device in devices)
            )
            assert acked == list(presses.values()), "every press acked"
            stopping_at = time.time()
            await plane.stop(grace=2.0)  # at once after the last acks, devices still connected
        finally:
            for device in devices:
                await device.disconnect()
            await plane.stop(grace=1.0)
        store = SqliteStateStore(path)
        try:
            records = {record.device_id: record for record in store.records()}
        finally:
            store.close()
        for device_id, count in presses.items():
            record = records[device_id]
            assert record.mode == count % library.modes, device_id
            assert record.last_seen is not None, device_id
            assert record.last_seen >= stopping_at - 0.01, (
                f"{device_id}: its final state at shutdown was not saved"
            )

    run(scenario)


def test_presses_acked_just_before_sigterm_and_every_final_state_are_in_the_store_afterwards(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    modes = 5
    server = ServerProcess(tmp_path / "server.log", "--state-db", str(db), "--modes", str(modes))
    rng = random.Random(10)
    presses = {f"device-{number}": rng.randint(1, 7) for number in range(DEVICES)}
    stopping_at = 0.0

    async def press_then_sigterm() -> None:
        nonlocal stopping_at
        devices = [
            SimulatedDevice(server.target, device_id, play_in_real_time=False) for device_id in presses
        ]
        try:
            for device in devices:
                await device.connect()
                await device.wait_for_first_set(5)
            acked = await asyncio.gather(
                *(press_many(device, presses[device.device_id]) for device in devices)
            )
            assert acked == list(presses.values()), "every press acked"
            stopping_at = time.time()
            assert await asyncio.to_thread(server.stop) == 0, server.output
        finally:
            for device in devices:
                await device.disconnect()

    try:
        asyncio.run(press_then_sigterm())
    finally:
        server.kill()
    store = SqliteStateStore(db)
    try:
        records = {record.device_id: record for record in store.records()}
    finally:
        store.close()
    for device_id, count in presses.items():
        record = records[device_id]
        assert record.mode == count % modes, device_id
        assert record.last_seen is not None, device_id
        assert record.last_seen >= stopping_at - 0.01, (
            f"{device_id}: its final state at SIGTERM was not saved"
        )


def test_a_device_actor_stuck_at_shutdown_is_named_in_the_log_and_stop_ends_within_the_grace(
    library: SoundLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    real = DeviceActor.on_receive

    def stuck_at_retire(self: DeviceActor, message: Any) -> Any:
        if self.device_id == "stuck" and isinstance(message, Retire):
            return None  # never hands over its final state
        return real(self, message)

    monkeypatch.setattr(DeviceActor, "on_receive", stuck_at_retire)
    grace = 2.0

    async def scenario() -> None:
        plane = ControlPlane(replace(TEST_CONFIG, state_db=str(path)), library)
        await plane.start()
        target = f"127.0.0.1:{plane.port}"
        devices = [SimulatedDevice(target, name, play_in_real_time=False) for name in ("stuck", "fine")]
        try:
            for device in devices:
                await device.connect()
                assert await device.press(Button.MODE)
                assert await device.press(Button.MODE)
            caplog.clear()
            started = time.monotonic()
            with caplog.at_level(logging.WARNING):
                await plane.stop(grace=grace)
            assert time.monotonic() - started < grace + 1.0, "stop ends within the grace (and a margin)"
        finally:
            for device in devices:
                await device.disconnect()
            await plane.stop(grace=1.0)
        named = [
            record
            for record in caplog.records
            if "stuck" in record.getMessage() and "final state" in record.getMessage()
        ]
        assert named, f"no log line names the stuck device: {caplog.text}"
        assert not any("fine" in record.getMessage() for record in named)
        store = SqliteStateStore(path)
        try:
            stuck, fine = store.load("stuck"), store.load("fine")
        finally:
            store.close()
        assert stuck is not None
        assert stuck.mode == 2, "its last known state is kept"
        assert fine is not None
        assert fine.mode == 2

    run(scenario)
