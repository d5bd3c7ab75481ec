"""Store and fleet-view failures injected into a running server.

The request that needed the failing part gets a clear failure (an ack ``false``, a command
``FAILED``, a stream ended with a status and a message), every other device goes on being
routed, health stays SERVING (the server still routes), and everything works again once the
failure clears. Real gRPC, real SQLite files, a real redis-server.

A full disk is a SQLite store whose writes fail with ``ENOSPC``: a real small tmpfs mounts
here as root, but whether SQLite needs a new block for a write depends on where its WAL is
(it reuses its pages after a checkpoint), so a full filesystem fails some writes and not
others; the failing store fails every write, every run.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from actors.messages import CommandOutcome, CommandResult, RouteCommand
from actors.state import DeviceState, SetMode
from actors.store import SqliteStateStore, StateStore
from admin.fleetview import FleetView
from media.library import SoundLibrary
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.live import TEST_CONFIG, eventually, run, target
from tests.redis_server import redis_server

SERVING = health_pb2.HealthCheckResponse.SERVING


@asynccontextmanager
async def serving_with(
    library: SoundLibrary, state_store: StateStore | None = None, **overrides: Any
) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(replace(TEST_CONFIG, **overrides), library, state_store)
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop(grace=1.0)


async def health_of(plane: ControlPlane) -> int:
    async with grpc.aio.insecure_channel(target(plane)) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the published stubs omit the RPC methods
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return int(response.status)


async def set_mode(plane: ControlPlane, device_id: str, mode: int) -> CommandResult:
    """An operator's SetMode, as the API sends it: answered by the supervisor within 5 s."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[CommandResult] = loop.create_future()

    def reply(result: CommandResult) -> None:
        loop.call_soon_threadsafe(answer.set_result, result)

    plane.supervisor.tell(RouteCommand(device_id, SetMode(mode), reply))
    async with asyncio.timeout(5):
        return await answer


async def seen_once(plane: ControlPlane, device_id: str) -> None:
    """The device connects, is saved, and goes away: an offline device the store knows."""
    async with SimulatedDevice(target(plane), device_id, play_in_real_time=False) as device:
        assert await device.press(Button.MODE)


class FailingSqliteStore(SqliteStateStore):
    """A real SQLite store whose writes (or one device's reads) fail while told to."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.disk_full = False
        self.unreadable: set[str] = set()

    def _write(self) -> None:
        if self.disk_full:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    def load(self, device_id: str) -> DeviceState | None:
        if device_id in self.unreadable:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return super().load(device_id)

    def save(self, device_id: str, state: DeviceState) -> None:
        self._write()
        super().save(device_id, state)

    def save_many(self, states: Sequence[tuple[str, DeviceState]]) -> None:
        self._write()
        super().save_many(states)

    def set_desired(self, device_id: str, mode: int) -> None:
        self._write()
        super().set_desired(device_id, mode)

    def clear_desired(self, device_id: str, mode: int) -> None:
        self._write()
        super().clear_desired(device_id, mode)

    def remove(
        self, device_ids: Sequence[str], unseen_since: float | None, done: Callable[[frozenset[str]], None]
    ) -> None:
        self._write()
        super().remove(device_ids, unseen_since, done)


def test_a_locked_database_fails_the_writes_that_need_it_and_routing_goes_on(
    library: SoundLibrary, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"

    async def scenario() -> None:
        store = SqliteStateStore(path, busy_timeout=0.2)
        async with serving_with(library, store, state_db=str(path)) as plane:
            await seen_once(plane, "away")  # mode 1
            async with SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as kitchen:
                assert await kitchen.press(Button.MODE)  # mode 1
                holder = sqlite3.connect(path, isolation_level=None)
                holder.execute("BEGIN EXCLUSIVE")  # another connection holds the write lock
                try:
                    failed = await set_mode(plane, "away", 3)
                    assert failed.outcome is CommandOutcome.FAILED, "a clear failure, not a hang"
                    assert not await kitchen.press(Button.MODE), "mode 2 is not saved, so not acked"
                    async with SimulatedDevice(target(plane), "hall", play_in_real_time=False) as hall:
                        assert hall.connected, "reads still work: a new device is served"
                    assert await health_of(plane) == SERVING
                finally:
                    holder.execute("ROLLBACK")
                    holder.close()
                assert (await set_mode(plane, "away", 3)).outcome is CommandOutcome.DESIRED
                assert await kitchen.press(Button.MODE)  # mode 3, after the pending mode 2
            assert await health_of(plane) == SERVING
        reopened = SqliteStateStore(path)
        try:
            assert reopened.load_desired("away") == 3
            kitchen_state = reopened.load("kitchen")
            assert kitchen_state is not None
            assert kitchen_state.mode == 3
        finally:
            reopened.close()

    run(scenario)


def test_a_full_disk_fails_the_writes_that_need_it_and_routing_goes_on(
    library: SoundLibrary, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"

    async def scenario() -> None:
        store = FailingSqliteStore(path)
        async with serving_with(library, store, state_db=str(path)) as plane:
            await seen_once(plane, "away")
            async with SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as kitchen:
                assert await kitchen.press(Button.MODE)  # mode 1
                store.disk_full = True
                assert (await set_mode(plane, "away", 4)).outcome is CommandOutcome.FAILED
                assert not await kitchen.press(Button.MODE), "mode 2 is not saved, so not acked"
                assert await health_of(plane) == SERVING
                store.disk_full = False
                assert (await set_mode(plane, "away", 4)).outcome is CommandOutcome.DESIRED
                assert await kitchen.press(Button.MODE)  # mode 3
        reopened = SqliteStateStore(path)
        try:
            assert reopened.load_desired("away") == 4
            kitchen_state = reopened.load("kitchen")
            assert kitchen_state is not None
            assert kitchen_state.mode == 3
        finally:
            reopened.close()

    run(scenario)


def test_a_store_read_failing_at_connect_ends_that_devices_streams_with_unavailable_and_others_go_on(
    library: SoundLibrary, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"

    async def scenario() -> None:
        store = FailingSqliteStore(path)
        async with (
            serving_with(library, store, state_db=str(path)) as plane,
            SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as kitchen,
        ):
            store.unreadable.add("cellar")
            cellar = SimulatedDevice(target(plane), "cellar", play_in_real_time=False)
            await cellar.connect()
            code, details = await cellar.wait_for_stream_end("status", 5)
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "database disk image is malformed" in details
            await cellar.disconnect()
            assert await kitchen.press(Button.MODE), "the other device is still routed"
            assert await health_of(plane) == SERVING
            store.unreadable.clear()
            async with SimulatedDevice(target(plane), "cellar", play_in_real_time=False) as again:
                assert await again.press(Button.MODE)

    run(scenario)


def test_a_failing_fleet_view_costs_only_its_own_update_and_routing_goes_on(
    library: SoundLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = FleetView.device_online
    failures = {"left": 1}

    def failing_once(self: FleetView, device_id: str, peer: str, state: DeviceState) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("injected fault in the fleet view")
        real(self, device_id, peer, state)

    monkeypatch.setattr(FleetView, "device_online", failing_once)

    async def scenario() -> None:
        async with serving_with(library) as plane:
            async with SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as kitchen:
                assert await kitchen.press(Button.MODE), "served although the fleet view failed"
            async with SimulatedDevice(target(plane), "hall", play_in_real_time=False) as hall:
                assert await hall.press(Button.MODE)
                assert plane.fleet is not None
                await eventually(lambda: plane.fleet is not None and plane.fleet.connected("hall"))

    run(scenario)


def test_redis_stopped_and_started_again_fails_only_what_needs_it_and_routing_goes_on(
    library: SoundLibrary,
) -> None:
    with redis_server() as redis:

        async def scenario() -> None:
            async with (
                serving_with(library, None, store=redis.url) as plane,
                SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as kitchen,
            ):
                assert await kitchen.press(Button.MODE)  # mode 1
                redis.stop()
                assert not await kitchen.press(Button.MODE), "mode 2 cannot be saved, so not acked"
                cellar = SimulatedDevice(target(plane), "cellar", play_in_real_time=False)
                await cellar.connect()
                code, details = await cellar.wait_for_stream_end("status", 10)
                assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
                assert details
                await cellar.disconnect()
                assert await health_of(plane) == SERVING
                redis.start()

                async def pressed() -> bool:
                    return await kitchen.press(Button.MODE)

                async with asyncio.timeout(15):
                    while not await pressed():
                        await asyncio.sleep(0.2)
                async with SimulatedDevice(target(plane), "cellar", play_in_real_time=False) as again:
                    assert await again.press(Button.MODE)

        run(scenario)
