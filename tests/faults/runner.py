"""One schedule over real processes: redis-server, 2-3 replicas, HAProxy (the shipped config),
TCP relays on every path that a partition or a half-open connection needs, simulated devices.

Every replica reaches Redis through a relay, and the proxy reaches every replica through one,
so a partition cuts both without closing a socket. Every device reaches the proxy through a
relay of its own, so a reboot can leave its old connection open and silent while the device
connects anew. The devices press Mode throughout; after the window every fault is healed, the
devices reconnect and settle, and the final states are read from Redis, every replica's API and
the devices' LEDs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio

from actors.leds import mode_leds
from cluster.shared_store import device_key
from simulator import Button, Leds, SimulatedDevice
from simulator.reconnect import Backoff, Reconnector
from tests.faults.checker import Anomaly, advance, check
from tests.faults.history import FinalState, History, Outcome, Press
from tests.faults.schedule import Fault, Schedule, Step
from tests.proxy import free_port, haproxy
from tests.redis_server import RedisServer
from tests.relay import Relay
from tests.server_process import ServerProcess

MODES = 24
"""Many modes, so a loss that wraps around to the same mode is unlikely."""
PRESS_TIMEOUT = 4.0
"""A press with no ack by then is given up (info: it may still be applied)."""
SETTLE = 20.0
"""Seconds after the heal for every device to be back and every read to agree."""
BACKOFF = Backoff(factor=1.5, cap=1.0)


def shown_mode(leds: Leds) -> int | None:
    """The mode the mode LEDs show (the status LED is ignored: error or leaving keep the mode)."""
    lit = tuple(rgba >> 8 for rgba in leds[2:6])
    for mode in range(MODES):
        if lit == tuple(rgba >> 8 for rgba in mode_leds(mode)):
            return mode
    return None


class MovableRelay(Relay):
    """A relay whose upstream can change: a replica started again may need another port, its
    own having been taken meanwhile as some connection's ephemeral port."""

    def retarget(self, upstream_port: int) -> None:
        self._upstream = upstream_port


@dataclass
class Replica:
    name: str
    port: int
    admin_port: int
    log: Path
    to_redis: Relay
    to_replica: MovableRelay
    process: ServerProcess | None = None

    def restart(self, timeout: float = 30.0) -> None:
        """Start again until it stays up, as a deployment's supervisor does: a replica started while
        Redis is down exits (it cannot reach the shared store)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.start()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                self.port, self.admin_port = free_port(), free_port()  # in case its ports were taken
                self.to_replica.retarget(self.port)
                time.sleep(0.5)

    def start(self) -> None:
        self.process = ServerProcess(
            self.log,
            *("--port", str(self.port), "--admin-port", str(self.admin_port)),
            *("--store", f"redis://127.0.0.1:{self.to_redis.port}/0", "--replica-id", self.name),
            *("--modes", str(MODES), "--grace", "1"),
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        if self.alive:
            assert self.process is not None
            os.kill(self.process.process.pid, signum)

    def kill(self) -> None:
        if self.process is not None:
            self.signal(signal.SIGCONT)
            self.process.kill()
            self.process = None


@dataclass
class Driver:
    """One device: its current connection (and relay), pressing Mode until told to stop."""

    index: int
    device_id: str
    front_door_port: int
    history: History
    origin: float
    rng: random.Random
    device: SimulatedDevice | None = None
    relay: Relay | None = None
    reconnector: Reconnector | None = None
    possible: frozenset[int] = frozenset({0})
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    old: list[tuple[Relay, Reconnector]] = field(default_factory=list)

    def connect(self) -> None:
        self.relay = Relay(self.front_door_port)
        self.relay.start()
        self.device = SimulatedDevice(
            f"127.0.0.1:{self.relay.port}", self.device_id, play_in_real_time=False, connect_timeout=2
        )
        self.reconnector = Reconnector(self.device, BACKOFF)
        self.reconnector.start()

    async def press_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))
            async with self.lock:
                await self.press()

    async def press(self) -> None:
        device = self.device
        assert device is not None
        start = time.monotonic() - self.origin
        try:
            acked = await asyncio.wait_for(device.press(Button.MODE), PRESS_TIMEOUT)
        except (TimeoutError, ConnectionError) as error:
            press = Press(
                self.device_id, start, time.monotonic() - self.origin, "info", note=str(error)[:120]
            )
        else:
            shown = await self._shown_after(acked)
            outcome: Outcome = "ok" if acked else "fail"
            press = Press(self.device_id, start, time.monotonic() - self.origin, outcome, shown)
        self.possible = advance(self.possible, press, MODES)
        self.history.record(press)

    async def _shown_after(self, acked: bool) -> int | None:
        """Wait briefly for the LEDs to catch up with an acked press (the SET may trail the ack)."""
        device = self.device
        assert device is not None
        if not acked:
            return shown_mode(device.leds)
        moved = {(mode + 1) % MODES for mode in self.possible}
        deadline = time.monotonic() + 1.0
        while shown_mode(device.leds) not in moved and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return shown_mode(device.leds)

    async def reboot(self, half_open: float) -> None:
        """Leave the current connection open and silent, connect anew; close the old one later."""
        async with self.lock:
            assert self.relay is not None
            assert self.reconnector is not None
            self.relay.cut()
            self.old.append((self.relay, self.reconnector))
            stale = self.old[-1]
            self.connect()
        await asyncio.sleep(half_open)
        await self._close(stale)

    async def _close(self, stale: tuple[Relay, Reconnector]) -> None:
        relay, reconnector = stale
        if stale in self.old:
            self.old.remove(stale)
            await reconnector.stop()
            await asyncio.to_thread(relay.stop)

    async def stop(self) -> None:
        for stale in list(self.old):
            await self._close(stale)
        if self.reconnector is not None:
            await self.reconnector.stop()
        if self.relay is not None:
            await asyncio.to_thread(self.relay.stop)


@dataclass
class Result:
    schedule: Schedule
    history: History
    anomalies: list[Anomaly]
    seconds: float
    errors: list[str]

    def describe(self, with_history: bool = False) -> dict[str, Any]:
        presses = self.history.presses
        body: dict[str, Any] = {
            "seed": self.schedule.seed,
            "seconds": round(self.seconds, 1),
            "schedule": self.schedule.describe(),
            "presses": len(presses),
            "acked": sum(press.outcome == "ok" for press in presses),
            "indeterminate": sum(press.outcome == "info" for press in presses),
            "nacked": sum(press.outcome == "fail" for press in presses),
            "anomalies": [anomaly.describe() for anomaly in self.anomalies],
            "errors": self.errors,
        }
        if with_history:
            body["history"] = self.history.describe()
        return body


def run_schedule(schedule: Schedule, logs: Path | None = None, settle: float = SETTLE) -> Result:
    """Run ``schedule`` to the end (processes stopped whatever happens) and check its history."""
    with _scratch(logs) as work:
        return asyncio.run(_run(schedule, work, settle))


@contextlib.contextmanager
def _scratch(logs: Path | None) -> Iterator[Path]:
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        yield logs
    else:
        with tempfile.TemporaryDirectory(prefix="acp-faults-") as scratch:
            yield Path(scratch)


async def _run(schedule: Schedule, work: Path, settle: float) -> Result:
    began = time.monotonic()
    history = History()
    errors: list[str] = []
    (work / "redis").mkdir(exist_ok=True)
    store = RedisServer(work / "redis")
    store.start()
    replicas: list[Replica] = []
    drivers: list[Driver] = []
    try:
        for number in range(schedule.replicas):
            to_redis, to_replica = Relay(store.port), MovableRelay(port := free_port())
            to_redis.start()
            to_replica.start()
            name = f"replica{number + 1}"
            replicas.append(Replica(name, port, free_port(), work / f"{name}.log", to_redis, to_replica))
        with ThreadPoolExecutor(len(replicas)) as pool:
            list(pool.map(Replica.start, replicas))
        with haproxy([f"127.0.0.1:{replica.to_replica.port}" for replica in replicas]) as front_door:
            port = int(front_door.rsplit(":", 1)[1])
            rng = random.Random(schedule.seed)
            drivers = [
                Driver(n, f"s{schedule.seed}-d{n:02d}", port, history, began, random.Random(rng.random()))
                for n in range(schedule.devices)
            ]
            for driver in drivers:
                driver.connect()
            await _until(lambda: all(d.device is not None and d.device.established for d in drivers), 20)
            stop = asyncio.Event()
            pressing = [asyncio.create_task(driver.press_until(stop)) for driver in drivers]
            origin = time.monotonic()
            faults = [
                asyncio.create_task(_fault(step, origin, store, replicas, drivers)) for step in schedule.steps
            ]
            await asyncio.sleep(schedule.window)
            for result in await asyncio.gather(*faults, return_exceptions=True):
                if isinstance(result, BaseException):
                    errors.append(f"fault: {result!r}")
            stop.set()
            await asyncio.gather(*pressing)
            for driver in drivers:
                for stale in list(driver.old):
                    await driver._close(stale)
            finals = await _settle(store, replicas, drivers, settle)
            errors += [
                f"{replica.name} is not running at the end" for replica in replicas if not replica.alive
            ]
            history.finals.update(finals)
    finally:
        for driver in drivers:
            with contextlib.suppress(Exception):
                await driver.stop()
        for replica in replicas:
            replica.kill()
            replica.to_redis.stop()
            replica.to_replica.stop()
        store.stop(signal.SIGKILL)
    anomalies = check(history.presses, history.finals, [d.device_id for d in drivers], MODES)
    return Result(schedule, history, anomalies, time.monotonic() - began, errors)


async def _fault(
    step: Step, origin: float, store: RedisServer, replicas: list[Replica], drivers: list[Driver]
) -> None:
    await asyncio.sleep(max(0.0, origin + step.at - time.monotonic()))
    if step.fault is Fault.REBOOT_DEVICE:
        await drivers[step.target].reboot(step.duration)
        return
    replica = replicas[step.target] if step.fault is not Fault.KILL_REDIS else None
    if step.fault is Fault.KILL_REDIS:
        store.stop(signal.SIGKILL)
    elif step.fault is Fault.KILL_REPLICA:
        assert replica is not None
        replica.kill()
    elif step.fault is Fault.PAUSE_REPLICA:
        assert replica is not None
        replica.signal(signal.SIGSTOP)
    elif step.fault is Fault.PARTITION_REPLICA:
        assert replica is not None
        replica.to_redis.cut()
        replica.to_replica.cut()
    await asyncio.sleep(max(0.0, origin + step.heals_at - time.monotonic()))
    if step.fault is Fault.KILL_REDIS:
        await asyncio.to_thread(store.start)
    elif step.fault is Fault.KILL_REPLICA:
        assert replica is not None
        await asyncio.to_thread(replica.restart)
    elif step.fault is Fault.PAUSE_REPLICA:
        assert replica is not None
        replica.signal(signal.SIGCONT)
    elif step.fault is Fault.PARTITION_REPLICA:
        assert replica is not None
        replica.to_redis.heal()
        replica.to_replica.heal()


async def _settle(
    store: RedisServer, replicas: list[Replica], drivers: list[Driver], settle: float
) -> dict[str, FinalState]:
    """Every device back and idle, then read until every source agrees or SETTLE runs out."""
    deadline = time.monotonic() + settle
    await _until(
        lambda: all(
            d.device is not None and d.device.established and d.device.pending_events == 0 for d in drivers
        ),
        settle,
        strict=False,
    )
    finals: dict[str, FinalState] = {}
    client = redis.asyncio.Redis.from_url(store.url)
    try:
        async with httpx.AsyncClient(timeout=3) as api:
            while True:
                finals = {d.device_id: await _final(d, client, api, replicas) for d in drivers}
                if (
                    all(_agrees(finals[d.device_id], d.possible) for d in drivers)
                    or time.monotonic() > deadline
                ):
                    return finals
                await asyncio.sleep(0.5)
    finally:
        await client.aclose()


def _agrees(final: FinalState, possible: frozenset[int]) -> bool:
    return (
        final.store in possible and final.shown in possible and all(m in possible for m in final.api.values())
    )


async def _final(
    driver: Driver, client: redis.asyncio.Redis, api: httpx.AsyncClient, replicas: list[Replica]
) -> FinalState:
    raw = await client.hget(device_key(driver.device_id), "mode")
    modes: dict[str, int | None] = {}
    detail: dict[str, str] = {}
    for replica in replicas:
        if not replica.alive:
            continue
        try:
            reply = await api.get(f"http://127.0.0.1:{replica.admin_port}/api/devices/{driver.device_id}")
            body = reply.json() if reply.status_code == 200 else {}
            detail[replica.name] = "" if body else f"HTTP {reply.status_code}"
        except httpx.HTTPError as error:
            body = {}
            detail[replica.name] = repr(error)
        mode = body.get("mode")
        modes[replica.name] = mode if isinstance(mode, int) else None
        if body:
            on = "connected" if body.get("connected") else "not connected"
            detail[replica.name] = f"{on}, on {body.get('replica')}"
    assert driver.device is not None
    stored = int(raw) if raw is not None else None
    return FinalState(driver.device_id, stored, modes, shown_mode(driver.device.leds), detail)


async def _until(condition: Any, timeout: float, strict: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if strict:
                raise TimeoutError(f"not within {timeout:g} s")
            return
        await asyncio.sleep(0.05)
