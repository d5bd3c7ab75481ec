"""Three replicas and a Redis behind HAProxy, as real processes, with 300 simulated devices.

The devices live on an event loop of their own (a thread) for the whole module, so each test
acts on the same running fleet; they reconnect as firmware does (jittered backoff). The
replica kill comes last: it changes the cluster for anything after it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import pytest
import redis

from actors.leds import STATUS_IDLE, mode_leds
from cluster.shared_store import device_key
from simulator import Button, SimulatedDevice
from simulator.reconnect import Backoff, Reconnector
from tests.background import BackgroundLoop
from tests.live import eventually, shows
from tests.proxy import free_port, haproxy
from tests.redis_server import RedisServer, redis_server
from tests.scrape import scrape, total
from tests.server_process import ServerProcess

T = TypeVar("T")
DEVICES = 300
MODES = 5


@dataclass
class Replica:
    name: str
    port: int
    admin_port: int
    metrics_port: int
    log: Path
    process: ServerProcess | None = None

    def start(self, store: str) -> None:
        self.process = ServerProcess(
            self.log,
            *("--port", str(self.port), "--admin-port", str(self.admin_port)),
            *("--metrics-port", str(self.metrics_port), "--store", store),
            *("--replica-id", self.name, "--modes", str(MODES), "--grace", "2"),
        )

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def metric(self, name: str) -> float:
        return total(scrape(self.metrics_port), name)


@dataclass
class Cluster:
    redis: RedisServer
    replicas: list[Replica]
    front_door: str
    fleet: BackgroundLoop
    devices: dict[str, SimulatedDevice] = field(default_factory=dict)
    reconnectors: dict[str, Reconnector] = field(default_factory=dict)

    def listing(self, replica: Replica, **params: str) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            query = {**params, "limit": "1000", **({"after": after} if after else {})}
            body = httpx.get(f"{replica.api}/api/devices", params=query, timeout=10).json()
            devices += body["devices"]
            after = body["next"]
            if after is None:
                return devices


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("cluster")
    with redis_server() as redis:
        replicas = [
            Replica(f"replica{n}", free_port(), free_port(), free_port(), logs / f"replica{n}.log")
            for n in (1, 2, 3)
        ]
        fleet = BackgroundLoop("fleet")
        try:
            for replica in replicas:
                replica.start(redis.url)
            with haproxy([f"127.0.0.1:{replica.port}" for replica in replicas]) as front_door:
                cluster = Cluster(redis, replicas, front_door, fleet)
                fleet.run(_connect_all(cluster), timeout=120)
                yield cluster
                fleet.run(_disconnect_all(cluster), timeout=60)
        finally:
            for replica in replicas:
                if replica.process is not None:
                    replica.process.kill()
            fleet.close()


async def _connect_all(cluster: Cluster) -> None:
    backoff = Backoff()
    for number in range(DEVICES):
        device = SimulatedDevice(cluster.front_door, f"device-{number:03d}", play_in_real_time=False)
        cluster.devices[device.device_id] = device
        reconnector = Reconnector(device, backoff)
        cluster.reconnectors[device.device_id] = reconnector
        reconnector.start()
    await eventually(lambda: all(device.established for device in cluster.devices.values()), 60)


async def _disconnect_all(cluster: Cluster) -> None:
    await asyncio.gather(*(reconnector.stop() for reconnector in cluster.reconnectors.values()))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.1)


def holders(cluster: Cluster) -> dict[str, str]:
    """device_id -> the replica whose own view holds it, each replica asked about its own."""
    held: dict[str, str] = {}
    for replica in cluster.replicas:
        if replica.process is None or replica.process.process.poll() is not None:
            continue
        for device in cluster.listing(replica, connected="true"):
            if device["replica"] == replica.name:
                assert device["device_id"] not in held, f"{device['device_id']} is held twice"
                held[device["device_id"]] = replica.name
    return held


def test_every_device_through_the_proxy_has_its_three_streams_on_one_replica(cluster: Cluster) -> None:
    wait_until(lambda: len(holders(cluster)) == DEVICES, 10, "every device held by one replica")
    held = holders(cluster)
    counts = {replica.name: list(held.values()).count(replica.name) for replica in cluster.replicas}
    assert all(count > 0 for count in counts.values()), counts
    for replica in cluster.replicas:
        streams = replica.metric("acp_open_streams")
        assert streams == 3 * counts[replica.name], (replica.name, streams, counts)
        assert replica.metric("acp_state_saves_lease_ended_total") == 0, "no device bounced between replicas"


def test_presses_through_the_proxy_are_acked_and_listed_by_every_replica(cluster: Cluster) -> None:
    async def press_all() -> list[bool]:
        chosen = [cluster.devices[f"device-{number:03d}"] for number in range(0, DEVICES, 3)]
        return list(await asyncio.gather(*(device.press(Button.MODE) for device in chosen)))

    assert all(cluster.fleet.run(press_all()))
    for replica in cluster.replicas:

        def listed_in_mode_1(replica: Replica = replica) -> bool:
            modes = {device["device_id"]: device["mode"] for device in cluster.listing(replica)}
            return len(modes) == DEVICES and all(
                modes[f"device-{number:03d}"] == (1 if number % 3 == 0 else 0) for number in range(DEVICES)
            )

        wait_until(listed_in_mode_1, 10, f"{replica.name} lists all {DEVICES} in their modes")


def test_the_api_on_replica_1_plays_on_a_device_replica_3_holds(cluster: Cluster) -> None:
    held = holders(cluster)
    device_id = next(  # one in mode 0, whose sound is short (mode 1's is a 32 s stream)
        device_id
        for device_id, name in sorted(held.items())
        if name == "replica3" and _mode_shown(cluster.devices[device_id]) == 0
    )
    device = cluster.devices[device_id]
    before = len(device.completed_recordings)
    reply = httpx.post(f"{cluster.replicas[0].api}/api/devices/{device_id}/play", json={}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"] == "started"
    assert reply.json()["device"]["replica"] == "replica3"
    cluster.fleet.run(device.wait_for_recordings(before + 1, 20))


def test_an_announcement_to_all_on_one_replica_reaches_every_device_of_every_replica(
    cluster: Cluster,
) -> None:
    before = {device_id: len(device.completed_recordings) for device_id, device in cluster.devices.items()}
    reply = httpx.post(
        f"{cluster.replicas[1].api}/api/announce",
        json={"sound": "builtin-2", "target": {"all": True}},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert {device_id: results.get(device_id) for device_id in cluster.devices} == {
        device_id: "started" for device_id in cluster.devices
    }
    assert reply.json()["counts"]["started"] == DEVICES
    held = set(holders(cluster).values())
    assert held == {"replica1", "replica2", "replica3"}, "the devices are spread over all three"

    async def every_device_heard_it() -> None:
        await asyncio.gather(
            *(
                device.wait_for_recordings(before[device_id] + 1, 30)
                for device_id, device in cluster.devices.items()
            )
        )

    cluster.fleet.run(every_device_heard_it(), timeout=60)
    for device_id, device in cluster.devices.items():
        assert device.completed_recordings[-1].duration >= 2.6, device_id


def test_one_device_id_through_two_replicas_at_once_keeps_the_newest(cluster: Cluster) -> None:
    one, two = cluster.replicas[0], cluster.replicas[1]

    async def scenario() -> None:
        older = SimulatedDevice(f"127.0.0.1:{one.port}", "twin", play_in_real_time=False)
        await older.connect()
        await older.wait_for_first_set(5)
        newer = SimulatedDevice(f"127.0.0.1:{two.port}", "twin", play_in_real_time=False)
        await newer.connect()
        await newer.wait_for_first_set(5)
        code, details = await older.wait_for_stream_end("events", timeout=1.0)
        assert code == grpc.StatusCode.ABORTED
        assert "served by another server" in details
        assert await newer.press(Button.MODE)
        await newer.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
        await newer.disconnect()
        await older.disconnect()

    cluster.fleet.run(scenario())


def test_redis_restarted_mid_churn_loses_nothing_the_devices_did(cluster: Cluster) -> None:
    churning = [cluster.devices[f"device-{number:03d}"] for number in range(1, DEVICES, 10)]
    stop = asyncio.Event()

    async def churn(device: SimulatedDevice) -> None:
        while not stop.is_set():
            await device.press(Button.MODE)  # acked or not: the LEDs change, the save is retried
            await asyncio.sleep(0.05)

    async def start() -> list[asyncio.Task[None]]:
        return [asyncio.create_task(churn(device)) for device in churning]

    tasks = cluster.fleet.run(start())
    time.sleep(0.5)
    cluster.redis.stop(signal.SIGKILL)
    time.sleep(1.5)
    cluster.redis.start()
    time.sleep(1.0)

    async def finish() -> None:
        stop.set()
        await asyncio.gather(*tasks)

    cluster.fleet.run(finish())
    for replica in cluster.replicas:
        assert replica.metric("acp_store_outages_total") >= 1
        assert replica.process is not None
        assert "is unreachable" in replica.process.output
        assert "is reachable again" in replica.process.output
    shown = {device.device_id: _mode_shown(device) for device in churning}

    stored = redis.Redis.from_url(cluster.redis.url)

    def stored_as_shown() -> bool:
        modes = [stored.hget(device_key(device_id), "mode") for device_id in shown]
        return modes == [str(mode).encode() for mode in shown.values()]

    try:
        wait_until(stored_as_shown, 15, "every churned device's mode in Redis as its LEDs show it")
    finally:
        stored.close()


def test_a_killed_replicas_devices_are_back_on_the_others_in_their_mode_within_10_s(cluster: Cluster) -> None:
    victim = cluster.replicas[2]
    held = holders(cluster)
    moved = sorted(device_id for device_id, name in held.items() if name == victim.name)
    assert moved
    modes = {device_id: _mode_shown(cluster.devices[device_id]) for device_id in moved}
    connections = {device_id: cluster.devices[device_id].connections for device_id in moved}
    assert victim.process is not None
    killed_at = time.monotonic()
    victim.process.process.send_signal(signal.SIGKILL)
    victim.process.process.wait()

    def back() -> bool:
        return all(
            cluster.devices[device_id].connections > connections[device_id]  # connected anew
            and cluster.devices[device_id].established
            and _mode_shown(cluster.devices[device_id]) == modes[device_id]
            for device_id in moved
        )

    async def wait_back() -> float:
        await eventually(back, 10)
        return time.monotonic() - killed_at

    took = cluster.fleet.run(wait_back(), timeout=30)
    assert took <= 10.0
    survivors = holders(cluster)
    assert all(survivors.get(device_id) in ("replica1", "replica2") for device_id in moved)


def _mode_shown(device: SimulatedDevice) -> int | None:
    for mode in range(MODES):
        if shows((STATUS_IDLE.rgba, *mode_leds(mode)))(device.leds):
            return mode
    return None
