"""Replicas sharing Redis, in one process: a device is served by whichever it reached last."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import httpx
import pytest

from actors.leds import STATUS_IDLE, mode_leds
from media.library import SoundLibrary
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.admin_live import about, events, first
from tests.audio_files import dominant_frequency, write_tone
from tests.live import TEST_CONFIG, run, shows
from tests.redis_server import RedisServer, redis_server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@asynccontextmanager
async def replicas(
    library: SoundLibrary, redis: RedisServer, count: int
) -> AsyncIterator[list[ControlPlane]]:
    async with AsyncExitStack() as stack:
        planes = []
        for number in range(1, count + 1):
            config = replace(TEST_CONFIG, store=redis.url, replica_id=f"replica{number}", admin_port=0)
            plane = ControlPlane(config, library)
            await plane.start()
            stack.push_async_callback(plane.stop, 1.0)
            planes.append(plane)
        yield planes


def address(plane: ControlPlane) -> str:
    return f"127.0.0.1:{plane.port}"


def test_a_device_that_reaches_another_replica_is_taken_over_and_its_old_streams_end_aborted(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two):
            first = SimulatedDevice(address(one), "kitchen", play_in_real_time=False)
            await first.connect()
            assert await first.press(Button.MODE)
            await first.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
            second = SimulatedDevice(address(two), "kitchen", play_in_real_time=False)
            await second.connect()
            await second.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
            started = asyncio.get_running_loop().time()
            code, details = await first.wait_for_stream_end("events", timeout=1.0)
            assert asyncio.get_running_loop().time() - started <= 1.0
            assert code == grpc.StatusCode.ABORTED
            assert "served by another server" in details
            assert await second.press(Button.MODE)
            await second.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
            await second.disconnect()
            await first.disconnect()

    run(scenario)


def test_the_old_replica_does_not_overwrite_the_state_the_new_one_saved(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two):
            first = SimulatedDevice(address(one), "kitchen", play_in_real_time=False)
            await first.connect()
            assert await first.press(Button.MODE)
            second = SimulatedDevice(address(two), "kitchen", play_in_real_time=False)
            await second.connect()
            assert await second.press(Button.MODE)
            assert await second.press(Button.MODE)
            await first.wait_for_stream_end("events", timeout=1.0)
            await first.disconnect()  # the old replica's actor retires, and its last save is refused
            await asyncio.sleep(0.2)
            await second.disconnect()
            third = SimulatedDevice(address(one), "kitchen", play_in_real_time=False)
            await third.connect()
            await third.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(3))), 5)
            await third.disconnect()

    run(scenario)


def test_a_replica_restarted_resumes_a_device_from_the_shared_store(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 1) as (one,):
            device = SimulatedDevice(address(one), "kitchen", play_in_real_time=False)
            await device.connect()
            for _ in range(4):
                assert await device.press(Button.MODE)
            await device.disconnect()
        async with replicas(library, redis, 1) as (again,):
            device = SimulatedDevice(address(again), "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(4))), 5)
            await device.disconnect()

    run(scenario)


def test_a_new_device_is_refused_unavailable_while_the_store_is_down_and_a_connected_one_is_served(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 1) as (one,):
            connected = SimulatedDevice(address(one), "kitchen", play_in_real_time=False)
            await connected.connect()
            await connected.wait_for_first_set(5)
            redis.stop()
            newcomer = SimulatedDevice(address(one), "hall", play_in_real_time=False, connect_timeout=None)
            await newcomer.connect()
            code, details = await newcomer.wait_for_stream_end("events", timeout=5)
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "shared store is unreachable" in details
            assert not await connected.press(Button.MODE), "not acked: the store does not have it"
            await connected.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
            redis.start()
            async with asyncio.timeout(10):
                while one.shared is None or not one.shared.reachable or not one.store.load("kitchen"):
                    await asyncio.sleep(0.05)
            assert await connected.press(Button.MODE)
            await connected.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
            await newcomer.disconnect()
            await connected.disconnect()

    run(scenario)


def api(plane: ControlPlane) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{plane.admin_port}", timeout=10)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


def test_any_replicas_api_lists_every_device_with_the_replica_holding_it(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two), api(one) as client:
            devices = [SimulatedDevice(address(two), f"dev-{n}", play_in_real_time=False) for n in range(3)]
            for device in devices:
                await device.connect()
                await device.wait_for_first_set(5)

            async def listed() -> bool:
                body = (await client.get("/api/devices", params={"connected": "true"})).json()
                return [(d["device_id"], d["replica"]) for d in body["devices"]] == [
                    (f"dev-{n}", "replica2") for n in range(3)
                ]

            await until(listed)
            await devices[0].disconnect()

            async def offline() -> bool:
                return not (await client.get("/api/devices/dev-0")).json()["connected"]

            await until(offline)
            for device in devices[1:]:
                await device.disconnect()

    run(scenario)


def test_a_command_on_one_replica_reaches_the_device_another_holds_with_the_same_result(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two), api(one) as client:
            device = SimulatedDevice(address(two), "kitchen")
            await device.connect()
            await device.wait_for_first_set(5)
            await until(lambda: _connected_on(client, "kitchen", "replica2"))
            reply = await client.post("/api/devices/kitchen/mode", json={"mode": 3})
            assert reply.status_code == 200, reply.text
            assert reply.json()["result"] == "applied"
            assert reply.json()["device"]["replica"] == "replica2"
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(3))), 5)
            reply = await client.post("/api/devices/kitchen/play", json={})
            assert reply.status_code == 200, reply.text
            assert reply.json()["result"] == "started"
            await device.wait_for_recordings(1, 10)
            reply = await client.post("/api/devices/kitchen/mode", json={"mode": 9})
            assert reply.status_code == 422, "checked where the request arrives, as for a local device"
            await device.disconnect()

    run(scenario)


def test_a_mode_set_on_one_replica_while_the_device_is_away_is_applied_where_it_reconnects(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two), api(one) as client:
            device = SimulatedDevice(address(two), "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            await device.disconnect()
            await until(lambda: _offline(client, "kitchen"))
            reply = await client.post("/api/devices/kitchen/mode", json={"mode": 2})
            assert reply.json()["result"] == "desired", reply.text
            await asyncio.sleep(0.1)  # the desired mode reaches Redis in order behind the reply
            await device.connect()
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
            await device.disconnect()

    run(scenario)


async def _connected_on(client: httpx.AsyncClient, device_id: str, replica: str) -> bool:
    reply = await client.get(f"/api/devices/{device_id}")
    return reply.status_code == 200 and reply.json()["replica"] == replica


async def _offline(client: httpx.AsyncClient, device_id: str) -> bool:
    reply = await client.get(f"/api/devices/{device_id}")
    return reply.status_code == 200 and not reply.json()["connected"]


def test_a_sound_uploaded_and_assigned_on_one_replica_plays_on_a_device_another_holds(
    library: SoundLibrary, redis: RedisServer, tmp_path: Path
) -> None:
    bell = write_tone(tmp_path / "bell.wav", freq=660, seconds=1.2).read_bytes()

    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two), api(one) as client:
            created = await client.put(
                "/api/sounds/bell", content=bell, headers={"Content-Type": "audio/wav"}
            )
            assert created.status_code == 201, created.text
            assigned = await client.put("/api/modes/0", json={"sound": "bell"})
            assert assigned.status_code == 200, assigned.text
            async with asyncio.timeout(10):
                while two.sounds.for_mode(0).name != "bell":
                    await asyncio.sleep(0.02)
            device = SimulatedDevice(address(two), "kitchen", play_in_real_time=False)
            await device.connect()
            assert await device.press(Button.PLAY)
            recording = (await device.wait_for_recordings(1, 10))[0]
            assert len(recording.packets) == 60  # 1.2 s in 20 ms packets
            assert dominant_frequency(recording.pcm) == pytest.approx(660, abs=5)
            await device.disconnect()
        async with replicas(library, redis, 1) as (later,):
            async with asyncio.timeout(10):  # a replica serves first and decodes what it lacks meanwhile
                while later.sounds.for_mode(0).name != "bell":
                    await asyncio.sleep(0.02)

    run(scenario)


def test_the_audit_log_on_any_replica_shows_the_actions_taken_on_every_replica(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two), api(one) as first, api(two) as second:
            device = SimulatedDevice(address(two), "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            await until(lambda: _connected_on(first, "kitchen", "replica2"))
            assert (await first.post("/api/devices/kitchen/mode", json={"mode": 2})).status_code == 200
            assert (await second.post("/api/devices/kitchen/mode", json={"mode": 3})).status_code == 200

            async def both_logged() -> bool:
                entries = (await second.get("/api/audit")).json()["entries"]
                # The holder's own records of the relayed commands are left out here; the two
                # replicas' entries reach Redis each from its own queue, in either order.
                asked = [entry for entry in entries if entry["action"] != "relayed"]
                return sorted((entry["action"], entry["result"]["mode"]) for entry in asked) == [
                    ("mode", 2),
                    ("mode", 3),
                ]

            await until(both_logged)
            await device.disconnect()

    run(scenario)


def test_a_press_costs_at_most_two_requests_to_the_store(library: SoundLibrary, redis: RedisServer) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 1) as (one,):
            assert one.shared is not None
            device = SimulatedDevice(address(one), "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            await asyncio.sleep(0.2)  # the connect's own writes are out
            trips = one.shared.round_trips
            before = trips["save"] + trips["fleet"] + trips["claim"] + trips["operator"]
            assert await device.press(Button.MODE)
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
            await asyncio.sleep(0.2)  # the fleet view's coalesced flush
            after = trips["save"] + trips["fleet"] + trips["claim"] + trips["operator"]
            assert after - before <= 2, dict(trips)
            assert trips["save"] >= 1
            await device.disconnect()

    run(scenario)


def test_live_events_on_one_replica_follow_a_device_another_replica_holds(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two), api(one) as client:
            listing = (await client.get("/api/devices")).json()
            stream = events(client, {"Last-Event-ID": str(listing["event_id"])})
            device = SimulatedDevice(address(two), "kitchen", play_in_real_time=False)
            await device.connect()
            online = about("kitchen", lambda d: d["connected"] and d["replica"] == "replica2")
            await first(stream, online)
            assert await device.press(Button.MODE)
            await first(stream, about("kitchen", lambda d: d["mode"] == 1))
            await device.disconnect()
            await first(stream, about("kitchen", lambda d: not d["connected"]))
            await stream.aclose()

    run(scenario)
