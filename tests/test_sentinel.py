"""The shared store through Redis Sentinel: replicas follow a failover to the new primary, and a
save is acked only once a Redis replica holds it (``WAIT``), so SIGKILL of the primary loses
nothing acked. Real redis-server and redis-sentinel processes (``tests.redis_server``)."""

from __future__ import annotations

import asyncio
import gc
import signal
import warnings
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from actors.config import ServerConfig, parse_config
from cluster.sentinel import sentinel_target
from cluster.shared_store import SharedStore, device_key
from cluster.store_access import StoreAccess, check_store_settings, on_this_machine, redacted
from media.library import MAX_MODES, SoundLibrary, build_library
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.live import TEST_CONFIG, eventually, run
from tests.redis_server import RedisServer, SentinelGroup, sentinel_group

DEVICES = 20
PRESSES = MAX_MODES - 1
"""Presses per device, fewer than the modes: a device's stored mode is the count of its presses saved."""


@pytest.fixture(autouse=True)
def connections_left_by_a_failover_are_collected_here() -> Iterator[None]:
    """redis-py's Sentinel pool can drop a connection to a primary that died without closing it;
    its socket is reclaimed when collected. Collected here, after each test, so the warning does not
    land in whichever test the collector happens to run in next."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with sentinel_group() as started:
        yield started


@pytest.fixture
def group_of_three() -> Iterator[SentinelGroup]:
    """Two replicas: after a failover the new primary still has one to confirm saves."""
    with sentinel_group(replicas=2) as started:
        yield started


@pytest.fixture
def many_modes() -> SoundLibrary:
    return build_library(modes=MAX_MODES, frame_ms=20)


def stored_mode(server: RedisServer, device_id: str) -> int:
    with redis.Redis(port=server.port, socket_timeout=2) as client:
        value = client.hget(device_key(device_id), "mode")
    return -1 if value is None else int(value)


def sentinel_config(group: SentinelGroup, wait_replicas: int = 1) -> ServerConfig:
    return replace(
        TEST_CONFIG,
        modes=MAX_MODES,
        store=group.url,
        replica_id="replica1",
        store_wait_replicas=wait_replicas,
        store_wait_ms=1000,
    )


def test_a_sentinel_url_names_the_sentinels_and_the_service_and_hides_the_password() -> None:
    url = "redis+sentinel://acp:hunter2hunter2@127.0.0.1:26379,[::1]:26380/fleet/2"
    target = sentinel_target(url)
    assert target.sentinels == (("127.0.0.1", 26379), ("::1", 26380))
    assert (target.service, target.db, target.username, target.password) == (
        "fleet",
        2,
        "acp",
        "hunter2hunter2",
    )
    assert "hunter2" not in redacted(url)
    assert "hunter2" not in repr(target)
    assert on_this_machine(url)
    check_store_settings(url, None, None, None, "replica1")
    with pytest.raises(ValueError, match="SERVICE"):
        check_store_settings("redis+sentinel://127.0.0.1:26379", None, None, None, "replica1")
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_store_settings("redis+sentinel://127.0.0.1/fleet", None, None, None, "replica1")
    with pytest.raises(ValueError, match="beyond this machine"):
        check_store_settings("redis+sentinel://127.0.0.1:1,10.0.0.9:2/fleet", None, None, None, "r")


def test_store_wait_replicas_is_a_flag_and_needs_a_store() -> None:
    config = parse_config(["--store", "redis://127.0.0.1:6379/0", "--store-wait-replicas", "1"], {})
    assert (config.store_wait_replicas, config.store_wait_ms) == (1, 100)
    with pytest.raises(ValueError, match="needs a Redis store"):
        replace(TEST_CONFIG, store_wait_replicas=1)
    with pytest.raises(ValueError, match="store-wait-ms"):
        replace(TEST_CONFIG, store="redis://127.0.0.1:6379/0", store_wait_ms=60_000)


def test_the_server_serves_devices_through_sentinel(library: SoundLibrary, group: SentinelGroup) -> None:
    async def scenario() -> None:
        plane = ControlPlane(sentinel_config(group), library)
        await plane.start()
        try:
            device = SimulatedDevice(f"127.0.0.1:{plane.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            assert await device.press(Button.MODE), "acked through the primary the sentinels named"
            await device.disconnect()
        finally:
            await plane.stop(1.0)
        assert stored_mode(group.primary(), "kitchen") == 1
        assert stored_mode(group.replica(), "kitchen") == 1, "acked once the replica held it"

    run(scenario)


def test_every_press_acked_before_and_after_sigkill_of_the_primary_is_in_the_new_primary(
    many_modes: SoundLibrary, group_of_three: SentinelGroup
) -> None:
    group = group_of_three
    killed = group.primary()
    acked: dict[str, int] = {}
    acked_after_failover = 0

    async def presses(device: SimulatedDevice, kill: asyncio.Event) -> None:
        nonlocal acked_after_failover
        for press in range(PRESSES):
            if press == PRESSES // 3:
                await kill.wait()
            if await device.press(Button.MODE):
                acked[device.device_id] = acked.get(device.device_id, 0) + 1
                if press >= PRESSES // 3:  # made after the SIGKILL: only the new primary could take it
                    acked_after_failover += 1

    async def scenario() -> None:
        plane = ControlPlane(sentinel_config(group), many_modes)
        await plane.start()
        devices = [
            SimulatedDevice(f"127.0.0.1:{plane.port}", f"device-{number}", play_in_real_time=False)
            for number in range(DEVICES)
        ]
        try:
            for device in devices:
                await device.connect()
                await device.wait_for_first_set(5)
            kill = asyncio.Event()
            pressing = [asyncio.create_task(presses(device, kill)) for device in devices]
            await asyncio.sleep(0.3)
            killed.stop(signal.SIGKILL)
            kill.set()
            await asyncio.wait_for(asyncio.gather(*pressing), 50)
        finally:
            for device in devices:
                await device.disconnect()
            await plane.stop(1.0)

    run(scenario, timeout=90)
    promoted = group.primary()
    assert promoted is not killed, "the sentinels failed over"
    assert acked_after_failover > 0, "writes resumed on the new primary"
    for number in range(DEVICES):
        device_id = f"device-{number}"
        assert stored_mode(promoted, device_id) >= acked.get(device_id, 0), (
            f"{device_id}: an acked press lost"
        )


def test_a_save_no_replica_confirms_is_not_acked_until_the_replica_is_back(
    library: SoundLibrary, group: SentinelGroup
) -> None:
    async def scenario() -> None:
        plane = ControlPlane(sentinel_config(group), library)
        await plane.start()
        try:
            device = SimulatedDevice(f"127.0.0.1:{plane.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            replica = group.replica()
            await asyncio.to_thread(replica.stop)
            assert not await device.press(Button.MODE), "no replica confirmed the save: not acked"
            assert plane.shared is not None
            assert plane.shared.unreplicated > 0
            await asyncio.to_thread(replica.start)
            primary = group.primary()
            back = lambda: group.replicas_in_sync(primary) == 1  # noqa: E731
            await asyncio.to_thread(group.wait_until, back, 30, "the replica synced again")
            assert await device.press(Button.MODE), "acked once the replica holds it"
            assert stored_mode(replica, "kitchen") == 2, "the unacked save was retried, not dropped"
            await device.disconnect()
        finally:
            await plane.stop(1.0)

    run(scenario)


def test_the_change_feed_follows_the_new_primary_after_a_failover(group: SentinelGroup) -> None:
    async def scenario() -> None:
        writer = SharedStore(StoreAccess(group.url), "replica1", wait_replicas=0)
        reader = SharedStore(StoreAccess(group.url), "replica2")
        await writer.open()
        await reader.open()
        try:
            await writer.claim("kitchen")
            killed = group.primary()
            killed.stop(signal.SIGKILL)
            await asyncio.to_thread(group.wait_until, lambda: group.primary() is not killed, 30, "a failover")
            for mode in (3, 4):
                writer.set_desired("kitchen", mode)
                await eventually(lambda mode=mode: reader.load_desired("kitchen") == mode, timeout=30)  # type: ignore[misc]
        finally:
            await writer.aclose()
            await reader.aclose()

    run(scenario, timeout=90)


def test_a_reconnect_storm_of_claims_waiting_for_a_replica_does_not_exhaust_the_connection_pool(
    group: SentinelGroup,
) -> None:
    async def scenario() -> None:
        store = SharedStore(StoreAccess(group.url), "replica1", wait_replicas=1, wait_ms=1000)
        await store.open()
        try:
            await asyncio.gather(*(store.claim(f"device-{number}") for number in range(300)))
            assert all(store.owns(f"device-{number}") for number in range(300))
        finally:
            await store.aclose()

    run(scenario)
