"""Redis primary SIGKILLed under Sentinel while devices press: how long writes stop, and whether
anything acked is lost.

    .venv/bin/python -m bench.failover --devices 300

A server (in this process) reaches Redis through three redis-sentinel processes watching a
primary and two replicas (``tests.redis_server.sentinel_group``; down-after 1 s), with saves
acked only once one replica holds them (``--store-wait-replicas 1``). Every device presses Mode
every ``--interval`` s; the primary is SIGKILLed after ``--kill-after`` s. Reports when writes
resumed (the first press acked after the kill), each device's longest run without an ack across
the kill, and the devices whose acked presses the new primary does not hold. (A save the
primary took just before the kill may still be acked just after it: that is no resumption.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from dataclasses import replace
from typing import Any

from actors.config import ServerConfig
from media.library import MAX_MODES, build_library
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.redis_server import SentinelGroup, sentinel_group
from tests.test_sentinel import stored_mode

PRESSES = MAX_MODES - 1
"""Presses per device, fewer than the modes: a stored mode counts the presses saved."""


async def press_through_failover(
    group: SentinelGroup, devices: int, interval: float, kill_after: float
) -> dict[str, Any]:
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        admin_port=-1,
        preroll_ms=100,
        grace=1.0,
        modes=MAX_MODES,
        store=group.url,
        replica_id="bench",
        store_wait_replicas=1,
        store_wait_ms=100,
    )
    plane = ControlPlane(replace(config), build_library(modes=MAX_MODES, frame_ms=20))
    await plane.start()
    fleet = [
        SimulatedDevice(f"127.0.0.1:{plane.port}", f"device-{number}", play_in_real_time=False)
        for number in range(devices)
    ]
    acks: dict[str, list[float]] = {device.device_id: [] for device in fleet}
    resumed: list[float] = []
    """When presses made after the kill were acked: only the new primary could take those."""
    killed_at = 0.0

    async def presses(device: SimulatedDevice) -> None:
        for _ in range(PRESSES):
            made_after_kill = killed_at > 0
            if await device.press(Button.MODE):
                acks[device.device_id].append(time.monotonic())
                if made_after_kill:
                    resumed.append(time.monotonic())
            await asyncio.sleep(interval)

    try:
        await asyncio.gather(*(device.connect() for device in fleet))
        await asyncio.gather(*(device.wait_for_first_set(30) for device in fleet))
        pressing = asyncio.gather(*(presses(device) for device in fleet))
        await asyncio.sleep(kill_after)
        killed = group.primary()
        killed.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        await pressing
    finally:
        await asyncio.gather(*(device.disconnect() for device in fleet))
        await plane.stop(2.0)
    promoted = group.primary()
    longest = [_longest_gap(times, killed_at) for times in acks.values()]
    lost = [device_id for device_id, times in acks.items() if stored_mode(promoted, device_id) < len(times)]
    return {
        "devices": devices,
        "press_interval_s": interval,
        "failed_over": promoted is not killed,
        "acked_presses": sum(len(times) for times in acks.values()),
        "writes_resumed_after_s": round(min(resumed) - killed_at, 2) if resumed else None,
        "longest_device_without_ack_s": round(max(longest), 2),
        "devices_acked_after_kill": sum(1 for times in acks.values() if times and times[-1] > killed_at),
        "devices_with_acked_presses_lost": len(lost),
        "unreplicated_batches": None if plane.shared is None else plane.shared.unreplicated,
    }


def _longest_gap(times: list[float], killed_at: float) -> float:
    """From the kill (or the last ack before it) to the first ack after it."""
    before = [moment for moment in times if moment <= killed_at]
    after = [moment for moment in times if moment > killed_at]
    if not after:
        return float("inf")
    return after[0] - (before[-1] if before else killed_at)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between a device's presses")
    parser.add_argument("--kill-after", type=float, default=2.0)
    args = parser.parse_args(argv)
    with sentinel_group(replicas=2) as group:
        report = asyncio.run(press_through_failover(group, args.devices, args.interval, args.kill_after))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
