"""A replica cut off from Redis and from the proxy, as real processes: its devices move to the
other replica, and once the network heals it cannot overwrite what the other one saved."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from actors.leds import STATUS_IDLE, mode_leds
from cluster.shared_store import device_key
from simulator import Button, SimulatedDevice
from simulator.reconnect import Backoff, Reconnector
from tests.live import eventually, run, shows
from tests.proxy import free_port, haproxy
from tests.redis_server import redis_server
from tests.relay import Relay, relay
from tests.scrape import scrape, total
from tests.server_process import ServerProcess


def replica(log: Path, name: str, port: int, admin: int, metrics: int, store: str) -> ServerProcess:
    return ServerProcess(
        log,
        *("--port", str(port), "--admin-port", str(admin), "--metrics-port", str(metrics)),
        *("--store", store, "--replica-id", name, "--grace", "1"),
    )


def test_a_cut_off_replicas_devices_move_and_it_writes_no_stale_state_when_it_returns(tmp_path: Path) -> None:
    with redis_server() as store:
        port_a, port_b = free_port(), free_port()
        admin_a, admin_b, metrics_a, metrics_b = free_port(), free_port(), free_port(), free_port()
        with relay(store.port) as to_redis, relay(port_a) as to_a:
            a = replica(
                tmp_path / "a.log", "a", port_a, admin_a, metrics_a, f"redis://127.0.0.1:{to_redis.port}/0"
            )
            b = replica(tmp_path / "b.log", "b", port_b, admin_b, metrics_b, store.url)
            try:
                with haproxy([f"127.0.0.1:{to_a.port}", f"127.0.0.1:{port_b}"]) as front_door:
                    run(
                        lambda: scenario(front_door, admin_b, metrics_a, to_redis, to_a, store.url),
                        timeout=90,
                    )
            finally:
                a.kill()
                b.kill()


async def scenario(
    front_door: str, admin_b: int, metrics_a: int, to_redis: Relay, to_a: Relay, url: str
) -> None:
    devices = [SimulatedDevice(front_door, f"part-{n:02d}", play_in_real_time=False) for n in range(20)]
    reconnectors = [Reconnector(device, Backoff(factor=1.5, cap=2.0)) for device in devices]
    for reconnector in reconnectors:
        reconnector.start()
    try:
        await eventually(lambda: all(device.established for device in devices), 20)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_b}", timeout=5) as api:

            async def holder(device_id: str) -> str | None:
                body = (await api.get(f"/api/devices/{device_id}")).json()
                return body["replica"] if body.get("connected") else None

            await asyncio.sleep(0.5)  # the replicas' snapshots reach each other
            on_a = [device for device in devices if await holder(device.device_id) == "a"]
            assert on_a, "the proxy sent no device to replica a"
            for device in on_a:
                assert await device.press(Button.MODE)  # mode 1, saved by a
            connections = {device.device_id: device.connections for device in on_a}

            to_redis.cut()
            to_a.cut()
            # The proxy's checks of a fail, it cuts a's sessions, the devices reconnect onto b.
            await eventually(
                lambda: all(device.connections > connections[device.device_id] for device in on_a), 20
            )
            await eventually(lambda: all(device.established for device in on_a), 20)
            for device in on_a:
                await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
                assert await device.press(Button.MODE)  # mode 2, saved by b
            to_redis.heal()
            to_a.heal()
            # Replica a hears its connections are gone; whatever it still held for them is refused.
            await until_async(lambda: _gauge_is(metrics_a, "acp_connected_devices", 0), 20)
            await asyncio.sleep(1.0)  # its last saves, if any, answered (refused)
        stored = redis.Redis.from_url(url)
        try:
            modes = [stored.hget(device_key(device.device_id), "mode") for device in on_a]
            owners = [stored.hget(device_key(device.device_id), "owner") for device in on_a]
        finally:
            stored.close()
        assert modes == [b"2"] * len(on_a), "a's stale state overwrote b's"
        assert owners == [b"b"] * len(on_a)
    finally:
        await asyncio.gather(*(reconnector.stop() for reconnector in reconnectors))


def _gauge_is(metrics_port: int, name: str, value: float) -> bool:
    return total(scrape(metrics_port), name) == value


async def until_async(condition: Callable[[], bool], timeout: float) -> None:
    """For a condition that blocks (an HTTP request): asked on a thread."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.2)
