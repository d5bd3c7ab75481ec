"""Button→LED and Play→first-packet latency, measured at simulated devices against a real server process.

    .venv/bin/python -m bench.latency --devices 1 --rounds 50
    .venv/bin/python -m bench.latency --devices 100 --rounds 10

The server runs as its own process (``python -m actors.main``) so the devices' CPU does not
share its event loop. Each device has its own gRPC channel (its own TCP connection), as real
devices do, and repeats: press Mode and time until the LED SET that shows the new mode is
applied; press Play and time until the first audio packet arrives; press Stop; then pause a
random time (mean ``--pause``) so that a fleet's presses are spread out as a real fleet's are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from actors.leds import mode_leds
from simulator import Button, Leds, SimulatedDevice

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Samples:
    press_to_led: list[float] = field(default_factory=list)
    play_to_first_packet: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p90_ms": round(percentile(values, 90) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def start_server(extra: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The server logs to a file, so a full pipe can never stall it."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actors.main",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--metrics-port",
                "-1",
                "--admin-port",
                "-1",
                "--state-db",
                ":memory:",
                *extra,
            ],
            cwd=ROOT,
            stderr=sink,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"serving on 127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if match:
            return process, int(match.group(1))
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not start; see {log}")


def showing(mode: int) -> Callable[[Leds], bool]:
    """The device's mode LEDs show ``mode`` (colours only, as the device displays them)."""
    want = [rgba >> 8 for rgba in mode_leds(mode)]
    return lambda leds: [rgba >> 8 for rgba in leds[2:]] == want


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_device(
    target: str, index: int, rounds: int, modes: int, pause: float, samples: Samples, start: asyncio.Event
) -> None:
    device = SimulatedDevice(target, f"bench-{index}", play_in_real_time=False)
    await device.connect()
    await device.wait_for_first_set(10)
    await start.wait()
    jitter = random.Random(index)
    mode = 0
    for _ in range(rounds):
        await asyncio.sleep(jitter.uniform(0, 2 * pause))
        mode = (mode + 1) % modes
        shows_mode = showing(mode)
        pressed = time.monotonic()
        assert await device.press(Button.MODE)
        await device.wait_for_leds(shows_mode, 10)
        applied = next(t for t, leds in reversed(device.led_history) if shows_mode(leds))
        samples.press_to_led.append(applied - pressed)

        recordings = len(device.recordings)
        pressed = time.monotonic()
        assert await device.press(Button.PLAY)
        while len(device.recordings) == recordings:
            await asyncio.sleep(0.001)
        samples.play_to_first_packet.append(device.recordings[-1].arrivals[0] - pressed)
        assert await device.press(Button.STOP)
    await device.disconnect()


async def measure(target: str, devices: int, rounds: int, modes: int, pause: float) -> Samples:
    samples = Samples()
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(one_device(target, i, rounds, modes, pause, samples, start))
        for i in range(devices)
    ]
    await asyncio.sleep(0.5)
    start.set()
    await asyncio.gather(*tasks)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--modes", type=int, default=5)
    parser.add_argument(
        "--pause", type=float, default=1.0, help="mean seconds between a device's rounds (0: back to back)"
    )
    parser.add_argument("--target", help="measure a server already running here instead of starting one")
    parser.add_argument("--server-log", type=Path, default=Path("bench-server.log"))
    args = parser.parse_args(argv)
    process = None
    target = args.target
    if target is None:
        process, port = start_server(["--modes", str(args.modes)], args.server_log)
        target = f"127.0.0.1:{port}"
    server_cpu = cpu_seconds(process.pid) if process is not None else 0.0
    client_cpu = time.process_time()
    wall = time.monotonic()
    try:
        samples = asyncio.run(measure(target, args.devices, args.rounds, args.modes, args.pause))
        wall = time.monotonic() - wall
        client_cpu = time.process_time() - client_cpu
        if process is not None:
            server_cpu = cpu_seconds(process.pid) - server_cpu
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
    report = {
        "devices": args.devices,
        "rounds": args.rounds,
        "mean_pause_s": args.pause,
        "press_to_led": summary(samples.press_to_led),
        "play_to_first_packet": summary(samples.play_to_first_packet),
        "wall_s": round(wall, 2),
        "server_cpu_s": round(server_cpu, 2),
        "devices_cpu_s": round(client_cpu, 2),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
