"""The frozen device among ``--workers``: are acked presses kept when a stale worker lets go late?

One trial: a device connects and presses Mode (mode 1) on worker A, then freezes (its connection
stays open, silent); the same device_id connects again, and when that lands on worker B it
presses Mode twice there (both acked: mode 3) and goes away. Then the frozen connection dies
(worker A retires its stale session and saves its final state, mode 1) and the device
reconnects: it must come back in mode 3. A reconnect that lands on A itself is no trial (A replaces its own streams) and
is tried again with another device_id.

``python -m bench.frozen_device --trials 50`` starts a ``--workers 2`` server on a fresh state
file and prints a JSON report: trials, lost (devices that came back in another mode than their
last acked press), and the attempts that landed on the same worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from actors.leds import STATUS_IDLE, mode_leds
from bench.proc import ServerProcess
from simulator import Button, Leds, SimulatedDevice

MODES = 4
ACKED_MODE = 3
"""Mode 1 pressed on the frozen connection's worker, two more presses on the other one."""


@dataclass(frozen=True, slots=True)
class Trial:
    device_id: str
    frozen_on: int
    pressed_on: int
    came_back_in: int | None
    """The mode the device showed after its reconnect (None: no mode shown)."""

    @property
    def lost(self) -> bool:
        return self.came_back_in != ACKED_MODE


def shown_mode(leds: Leds) -> int | None:
    for mode in range(MODES):
        frame = (STATUS_IDLE.rgba, *mode_leds(mode))
        if [rgba >> 8 for rgba in leds[1:]] == [rgba >> 8 for rgba in frame]:
            return mode
    return None


async def holders(admin_ports: Sequence[int], device_id: str) -> set[int]:
    """The workers whose operator API has the device connected."""
    found: set[int] = set()
    async with httpx.AsyncClient(timeout=5) as client:
        for index, port in enumerate(admin_ports):
            reply = await client.get(f"http://127.0.0.1:{port}/api/devices/{device_id}")
            if reply.status_code == 200 and reply.json()["connected"]:
                found.add(index)
    return found


async def until(condition_holds: Callable[[], Awaitable[bool]], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await condition_holds():
            await asyncio.sleep(0.05)


async def trial(
    target: str, admin_ports: Sequence[int], device_id: str, timeout: float = 10.0
) -> Trial | None:
    """One trial; None when the second connection landed on the frozen one's worker."""
    frozen = SimulatedDevice(target, device_id, play_in_real_time=False)
    await frozen.connect()
    await frozen.wait_for_first_set(timeout)
    frozen_on: set[int] = set()

    async def held_by_one() -> bool:
        frozen_on.update(await holders(admin_ports, device_id))
        return len(frozen_on) == 1

    await until(held_by_one, timeout)
    (first,) = frozen_on
    assert await frozen.press(Button.MODE), "the press before the freeze was not acked"
    again = SimulatedDevice(target, device_id, play_in_real_time=False)
    await again.connect()
    await again.wait_for_first_set(timeout)
    others = await holders(admin_ports, device_id) - {first}
    if not others:
        await again.disconnect()
        await frozen.disconnect()
        return None
    (second,) = others
    for _ in range(2):
        assert await again.press(Button.MODE), "a press on the new worker was not acked"

    async def second_let_go() -> bool:
        return second not in await holders(admin_ports, device_id)

    async def nobody_holds() -> bool:
        return not await holders(admin_ports, device_id)

    await again.disconnect()  # the device goes away again (powered off, or it moves on)
    await until(second_let_go, timeout)
    await frozen.disconnect()  # the frozen connection finally dies: the stale worker retires it
    await until(nobody_holds, timeout)
    back = SimulatedDevice(target, device_id, play_in_real_time=False)
    await back.connect()
    try:
        leds = await back.wait_for_first_set(timeout)
        return Trial(device_id, first, second, shown_mode(leds))
    finally:
        await back.disconnect()


async def trials(
    target: str, admin_ports: Sequence[int], count: int, prefix: str = "frozen"
) -> dict[str, object]:
    """``count`` trials (attempts that landed on the same worker are tried again, up to 10 times count)."""
    done: list[Trial] = []
    same_worker = 0
    attempt = 0
    while len(done) < count and attempt < 10 * count:
        attempt += 1
        outcome = await trial(target, admin_ports, f"{prefix}-{attempt}")
        if outcome is None:
            same_worker += 1
        else:
            done.append(outcome)
    lost = [asdict(outcome) for outcome in done if outcome.lost]
    return {"trials": len(done), "lost": len(lost), "same_worker_attempts": same_worker, "lost_trials": lost}


def free_ports_in_a_row(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (worker i's admin port is base + i)."""
    for _ in range(100):
        probes: list[socket.socket] = []
        try:
            first_probe = socket.socket()
            probes.append(first_probe)
            first_probe.bind(("127.0.0.1", 0))
            first: int = first_probe.getsockname()[1]
            for port in range(first + 1, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no run of free ports")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.frozen_device", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acp-frozen-") as work:
        port = free_ports_in_a_row(3)
        admin = port + 1
        command = [
            sys.executable,
            *("-m", "actors.main", "--host", "127.0.0.1", "--workers", "2", "--port", str(port)),
            *("--admin-port", str(admin), "--metrics-port", "-1"),
            *("--state-db", str(Path(work) / "state.db"), "--modes", str(MODES)),
        ]
        server = ServerProcess(command, Path(work) / "server.log")
        try:
            _wait_for_admin([admin, admin + 1])
            report = asyncio.run(trials(f"127.0.0.1:{port}", [admin, admin + 1], args.trials))
        finally:
            server.stop()
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "workers": 2, **report}
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0 if report["lost"] == 0 else 1


def _wait_for_admin(ports: Sequence[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/devices", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
