"""Device records: the cap on them, their retention and their removal by an operator, on the real
server (in-process, real gRPC and HTTP) with SQLite, and among replicas sharing a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis.asyncio as aioredis

from actors.records import DAY
from actors.state import DeviceState
from actors.store import StoreFull
from admin.events import EventHub
from admin.fleetview import FleetView
from cluster.fleet_share import FleetShare
from cluster.shared_store import DEVICES, SharedStore, device_key
from media.library import SoundLibrary
from rpc.auth import TOKEN_KEY, token_for
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.admin_live import JSON, about, events, first, operated
from tests.live import TEST_CONFIG, eventually, run, serving, target
from tests.redis_server import RedisServer, redis_server

DEVICE_AUTH_SECRET = "device-auth-secret-for-the-record-tests"
OPERATOR_TOKEN = "operator-token-for-the-record-tests"
READONLY_TOKEN = "readonly-token-for-the-record-tests"


def device(plane: ControlPlane, device_id: str, **options: Any) -> SimulatedDevice:
    return SimulatedDevice(target(plane), device_id, play_in_real_time=False, **options)


async def served(plane: ControlPlane, device_id: str, **options: Any) -> SimulatedDevice:
    """A device connected and shown its LEDs: the server took it."""
    simulated = device(plane, device_id, **options)
    await simulated.connect()
    await simulated.wait_for_first_set(5)
    return simulated


async def visit(plane: ControlPlane, device_id: str) -> None:
    """A device that connects, is served, and goes away: the server keeps its record."""
    simulated = await served(plane, device_id)
    await simulated.disconnect()


async def refused(plane: ControlPlane, device_id: str) -> tuple[grpc.StatusCode, str]:
    simulated = device(plane, device_id)
    await simulated.connect()
    try:
        return await simulated.wait_for_stream_end("status", 5)
    finally:
        await simulated.disconnect()


async def until_offline(plane: ControlPlane, device_id: str) -> None:
    """Until the supervisor has the device's final state: no stream of it is left."""
    fleet = plane.fleet
    assert fleet is not None
    await eventually(lambda: device_id in fleet and not fleet.connected(device_id), timeout=5)


# The cap: unknown devices cannot fill the store.


def test_a_new_device_beyond_the_record_cap_is_refused_with_resource_exhausted(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library, max_device_records=3) as plane:
            for n in range(3):
                await visit(plane, f"known-{n}")
            code, details = await refused(plane, "made-up")
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 3 devices" in details
            assert plane.store.count() == 3

    run(scenario)


def test_a_known_device_always_gets_in_when_the_records_are_full(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library, max_device_records=2) as plane:
            await visit(plane, "kitchen")
            await visit(plane, "hall")
            assert (await refused(plane, "made-up"))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
            kitchen = await served(plane, "kitchen")
            assert await kitchen.press(Button.MODE)
            await kitchen.disconnect()

    run(scenario)


def test_the_record_cap_holds_when_many_new_devices_connect_at_once(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library, max_device_records=5) as plane:
            crowd = [device(plane, f"made-up-{n}") for n in range(40)]
            await asyncio.gather(*(simulated.connect() for simulated in crowd))

            def decided() -> bool:
                return all(simulated.established or "status" in simulated.stream_ends for simulated in crowd)

            await eventually(decided, timeout=10)
            assert sum(simulated.established for simulated in crowd) == 5
            assert plane.store.count() == 5
            await asyncio.gather(*(simulated.disconnect() for simulated in crowd))

    run(scenario)


def test_with_device_authentication_the_record_cap_does_not_apply(
    library: SoundLibrary, tmp_path: Path
) -> None:
    secret_file = tmp_path / "device-auth.secret"
    secret_file.write_text(DEVICE_AUTH_SECRET)

    async def scenario() -> None:
        async with serving(library, max_device_records=1, auth_secret_file=secret_file) as plane:
            for device_id in ("kitchen", "hall"):
                token = token_for(DEVICE_AUTH_SECRET.encode(), device_id)
                metadata = [("device_id", device_id), (TOKEN_KEY, token)]
                simulated = await served(plane, device_id, metadata=metadata)
                await simulated.disconnect()
            assert plane.store.count() == 2

    run(scenario)


# The retention: records of devices not seen for long are swept away.


def test_records_of_devices_not_seen_within_the_retention_are_removed_by_the_sweep(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with operated(library, device_retention_days=30) as op:
            plane = op.plane
            await visit(plane, "kitchen")
            await until_offline(plane, "kitchen")
            assert plane.sweeper is not None
            assert await plane.sweeper.sweep(now=time.time() + 29 * DAY) == frozenset()
            assert await plane.sweeper.sweep(now=time.time() + 31 * DAY) == {"kitchen"}
            assert (await op.http.get("/api/devices/kitchen")).status_code == 404
            assert plane.store.load("kitchen") is None
            assert plane.store.count() == 0

    run(scenario)


def test_a_connected_device_keeps_its_record_through_every_sweep(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library, device_retention_days=30) as plane:
            kitchen = await served(plane, "kitchen")
            assert await kitchen.press(Button.MODE)
            assert plane.sweeper is not None
            assert await plane.sweeper.sweep(now=time.time() + 400 * DAY) == frozenset()
            await kitchen.disconnect()
            await until_offline(plane, "kitchen")
            assert plane.store.load("kitchen") == DeviceState(mode=1, next_playback_id=1)

    run(scenario)


def test_a_sweep_refreshes_its_connected_devices_so_a_worker_sharing_the_file_keeps_them(
    library: SoundLibrary, tmp_path: Path
) -> None:
    """Workers share one SQLite file and each knows only its own connected devices."""
    shared = replace(TEST_CONFIG, state_db=str(tmp_path / "devices.sqlite3"), device_retention_days=30)

    async def scenario() -> None:
        holder, sibling = ControlPlane(shared, library), ControlPlane(shared, library)
        await holder.start()
        await sibling.start()
        try:
            kitchen = await served(holder, "kitchen")
            now = time.time()
            assert holder.sweeper is not None
            assert sibling.sweeper is not None
            assert await holder.sweeper.sweep(now=now + 20 * DAY) == frozenset()
            assert await sibling.sweeper.sweep(now=now + 31 * DAY) == frozenset()
            assert sibling.store.load("kitchen") is not None
            await kitchen.disconnect()
        finally:
            await holder.stop(1.0)
            await sibling.stop(1.0)

    run(scenario)


# Removal by an operator: DELETE /api/devices/{id}.


def operator_tokens(tmp_path: Path) -> dict[str, Any]:
    operator, readonly = tmp_path / "operator.tokens", tmp_path / "readonly.tokens"
    operator.write_text(f"alice:{OPERATOR_TOKEN}\n")
    readonly.write_text(f"bob:{READONLY_TOKEN}\n")
    return {"admin_token_file": operator, "admin_readonly_token_file": readonly}


def test_deleting_an_offline_device_forgets_it_and_the_audit_log_says_who(
    library: SoundLibrary, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    async def scenario() -> None:
        async with operated(library, headers, **operator_tokens(tmp_path)) as op:
            await visit(op.plane, "kitchen")
            await visit(op.plane, "hall")
            await op.until_device("kitchen", lambda d: not d["connected"])
            assert (
                await op.http.put("/api/devices/kitchen/tags", json={"tags": ["lobby"]})
            ).status_code == 200
            response = await op.http.delete("/api/devices/kitchen")
            assert response.status_code == 204, response.text
            assert (await op.http.get("/api/devices/kitchen")).status_code == 404
            listing = (await op.http.get("/api/devices")).json()
            assert [d["device_id"] for d in listing["devices"]] == ["hall"]
            assert op.plane.store.load("kitchen") is None
            [entry, *_] = (await op.http.get("/api/audit")).json()["entries"]
            assert (entry["who"], entry["action"], entry["target"], entry["result"]) == (
                "alice",
                "device.remove",
                "kitchen",
                {"result": "removed"},
            )

    run(scenario)


def test_a_removed_device_that_connects_again_starts_afresh(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            kitchen = await served(op.plane, "kitchen")
            assert await kitchen.press(Button.MODE)
            await kitchen.disconnect()
            await op.until_device("kitchen", lambda d: not d["connected"])
            assert (await op.http.delete("/api/devices/kitchen")).status_code == 204
            await kitchen.connect()
            again = await op.until_device("kitchen", lambda d: d["connected"])
            assert (again["mode"], again["tags"]) == (0, [])
            await kitchen.disconnect()

    run(scenario)


def test_deleting_a_connected_device_is_409_and_keeps_it(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await op.until_device("kitchen", lambda d: d["connected"])
            response = await op.http.delete("/api/devices/kitchen")
            assert response.status_code == 409
            assert "connected" in response.json()["detail"]
            assert (await op.http.get("/api/devices/kitchen")).status_code == 200

    run(scenario)


def test_deleting_a_device_never_seen_is_404(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            response = await op.http.delete("/api/devices/nobody")
            assert response.status_code == 404
            assert "nobody" in response.json()["detail"]

    run(scenario)


def test_a_readonly_token_may_not_delete_a_device(library: SoundLibrary, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with operated(
            library, {"Authorization": f"Bearer {READONLY_TOKEN}"}, **operator_tokens(tmp_path)
        ) as op:
            await visit(op.plane, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            assert (await op.http.delete("/api/devices/kitchen")).status_code == 403
            assert (await op.http.get("/api/devices/kitchen")).status_code == 200

    run(scenario)


def test_live_events_tell_of_a_removed_device(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            await visit(op.plane, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            stream = events(op.http)
            await first(stream, about("kitchen", lambda d: not d["connected"]))
            assert (await op.http.delete("/api/devices/kitchen")).status_code == 204
            _, kind, data = await first(stream, lambda e: e[1] != "device")
            assert (kind, data) == ("removed", {"device_id": "kitchen"})
            await stream.aclose()

    run(scenario)


# Among replicas sharing Redis.


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@asynccontextmanager
async def replicas(
    library: SoundLibrary, redis: RedisServer, count: int, **overrides: Any
) -> AsyncIterator[list[ControlPlane]]:
    async with AsyncExitStack() as stack:
        planes = []
        for number in range(1, count + 1):
            config = replace(
                TEST_CONFIG, store=redis.url, replica_id=f"replica{number}", admin_port=0, **overrides
            )
            plane = ControlPlane(config, library)
            await plane.start()
            stack.push_async_callback(plane.stop, 1.0)
            planes.append(plane)
        yield planes


def admin(plane: ControlPlane) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{plane.admin_port}", headers=JSON, timeout=10)


async def status_of(http: httpx.AsyncClient, device_id: str) -> int:
    return (await http.get(f"/api/devices/{device_id}")).status_code


def test_the_record_cap_holds_for_the_whole_fleet_across_replicas(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2, max_device_records=2) as (one, two):
            await visit(one, "kitchen")
            await visit(two, "hall")
            for plane in (one, two):
                code, details = await refused(plane, "made-up")
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "limit of 2 devices" in details
            await visit(two, "kitchen")  # known: it gets in anywhere
            raw = aioredis.Redis.from_url(redis.url)
            try:
                assert await raw.scard(DEVICES) == 2
                assert not await raw.exists(device_key("made-up"))
            finally:
                await raw.aclose()

    run(scenario, timeout=90)


def test_a_device_removed_on_one_replica_is_gone_from_every_replicas_view_and_from_redis(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two), admin(one) as http_one, admin(two) as http_two:
            await visit(one, "kitchen")
            await eventually(lambda: two.fleet is not None and "kitchen" in two.fleet, timeout=5)
            await eventually(lambda: one.fleet is not None and not one.fleet.connected("kitchen"), timeout=5)
            assert (await http_two.delete("/api/devices/kitchen")).status_code == 204
            assert await status_of(http_two, "kitchen") == 404
            async with asyncio.timeout(5):
                while await status_of(http_one, "kitchen") != 404:
                    await asyncio.sleep(0.02)
            raw = aioredis.Redis.from_url(redis.url)
            try:
                assert not await raw.exists(device_key("kitchen"))
                assert not await raw.sismember(DEVICES, "kitchen")
            finally:
                await raw.aclose()

    run(scenario, timeout=90)


def test_a_device_another_replica_holds_is_not_removed(library: SoundLibrary, redis: RedisServer) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2) as (one, two), admin(two) as http_two:
            kitchen = await served(one, "kitchen")
            await eventually(lambda: two.fleet is not None and two.fleet.connected("kitchen"), timeout=5)
            response = await http_two.delete("/api/devices/kitchen")
            assert response.status_code == 409
            assert "replica1" in response.json()["detail"]
            assert await kitchen.press(Button.MODE)
            await kitchen.disconnect()

    run(scenario, timeout=90)


def test_a_sweep_on_one_replica_removes_stale_records_from_every_replicas_view(
    library: SoundLibrary, redis: RedisServer
) -> None:
    async def scenario() -> None:
        async with replicas(library, redis, 2, device_retention_days=30) as (one, two):
            await visit(one, "kitchen")
            held = await served(one, "hall")
            await eventually(lambda: two.fleet is not None and two.fleet.connected("hall"), timeout=5)
            await eventually(lambda: one.fleet is not None and not one.fleet.connected("kitchen"), timeout=5)
            assert two.sweeper is not None
            assert await two.sweeper.sweep(now=time.time() + 31 * DAY) == {"kitchen"}
            await eventually(lambda: one.fleet is not None and "kitchen" not in one.fleet, timeout=5)
            assert one.fleet is not None
            assert one.fleet.connected("hall")
            await held.disconnect()

    run(scenario, timeout=90)


def test_the_store_refuses_to_remove_a_record_a_replica_holds_even_if_its_view_lags(
    redis: RedisServer,
) -> None:
    """The race the API's own check cannot see: the device connected to another replica meanwhile."""

    async def scenario() -> None:
        holder, remover = SharedStore(redis.url, "holder"), SharedStore(redis.url, "remover")
        await holder.open()
        await remover.open()
        view = FleetView(EventHub(time.time), time.time, replica="holder")
        share = FleetShare(holder.client, "holder", view, seal=holder.seal, rejections=holder.rejections)
        await share.start()
        try:
            await holder.claim("kitchen")
            view.device_online("kitchen", "ipv4:127.0.0.1:1", DeviceState())  # its snapshot: held
            raw = aioredis.Redis.from_url(redis.url)
            try:
                async with asyncio.timeout(5):
                    while not await raw.hexists("acp:live:holder", "kitchen"):
                        await asyncio.sleep(0.01)
            finally:
                await raw.aclose()
            answers: asyncio.Queue[frozenset[str]] = asyncio.Queue()
            remover.remove(["kitchen"], None, answers.put_nowait)
            assert await answers.get() == frozenset()
            remover.remove(["kitchen"], time.time() + DAY, answers.put_nowait)
            assert await answers.get() == frozenset()
            assert holder.owns("kitchen")
        finally:
            await share.aclose()
            await holder.aclose()
            await remover.aclose()

    run(scenario)


def test_a_claim_beyond_the_cap_leaves_nothing_in_redis(redis: RedisServer) -> None:
    async def scenario() -> None:
        store = SharedStore(redis.url, "a", max_records=1)
        await store.open()
        try:
            await store.claim("kitchen")
            with pytest.raises(StoreFull, match="limit of 1 devices"):
                await store.claim("made-up")
            raw = aioredis.Redis.from_url(redis.url)
            try:
                assert not await raw.exists(device_key("made-up"))
                assert await raw.smembers(DEVICES) == {b"kitchen"}
            finally:
                await raw.aclose()
        finally:
            await store.aclose()

    run(scenario)
