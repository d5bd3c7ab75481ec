"""Replicas sharing Redis: what the shared store costs, how fast a command crosses replicas, and
how fast a killed replica's devices are back.

    .venv/bin/python -m bench.cluster --out docs/benchmarks/cluster-2026-12-03.json
    .venv/bin/python -m bench.cluster --steps cost --stream-devices 180 --press-devices 1000

Steps:
- ``cost``: the same load (``bench.loadgen``, server on core 0, load generator and Redis on
  core 1) against one server with its SQLite file and one with ``--store redis://``: server CPU
  per packet (streaming) and per press (a press storm), and the requests sent to Redis per
  press (the server's ``acp_store_round_trips_total``).
- ``commands``: two replicas; devices on replica B, Mode commands through replica A's API:
  from the POST to the device seeing its LEDs change, and the API's reply.
- ``failover``: three replicas behind HAProxy with 300 reconnecting devices; one replica killed
  with SIGKILL: from the kill until every device it held is served again, in its mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from actors.leds import STATUS_IDLE, mode_leds
from bench.proc import ROOT, ServerProcess, pinned_command
from simulator import Button, SimulatedDevice
from simulator.reconnect import Backoff, Reconnector

SERVER_CORE = (0,)
LOAD_CORE = (1,)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(cores: Sequence[int] = LOAD_CORE) -> Iterator[str]:
    """redis-server as deployments run it (AOF, fsync always), on the load generator's core."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="acp-bench-redis-") as scratch:
        command = [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "yes", "--appendfsync", "always", "--dir", scratch),
        ]
        run, preexec = pinned_command(command, cores)
        process = subprocess.Popen(run, stdout=subprocess.DEVNULL, preexec_fn=preexec)
        try:
            deadline = time.monotonic() + 10
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2) as probe,
                ):
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


def metric(port: int, name: str, label: str | None = None) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    pattern = rf"^{name}(?:{{([^}}]*)}})? (\S+)$"
    total = 0.0
    for labels, value in re.findall(pattern, text, re.M):
        if label is None or label in labels:
            total += float(value)
    return total


def project_server(
    log: Path, extra: list[str], cores: Sequence[int] = SERVER_CORE
) -> tuple[ServerProcess, int]:
    metrics = free_port()
    command = [
        sys.executable,
        *("-m", "actors.main", "--host", "127.0.0.1", "--port", "0", "--admin-port", "-1"),
        *("--metrics-port", str(metrics), "--modes", "5", *extra),
    ]
    return ServerProcess(command, log, cores), metrics


def loadgen(
    target: str, pid: int, scenario: str, devices: int, duration: float, *extra: str
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            *("-m", "bench.loadgen", "--target", target, "--server-pid", str(pid)),
            *("--scenario", scenario, "--devices", str(devices), "--duration", str(duration)),
            *("--loadgen-cores", "1", "--out", out.name, *extra),
        ]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        report: dict[str, Any] = json.loads(Path(out.name).read_text())
        return report


def cost(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Server CPU per packet and per press, SQLite file against Redis, same load, same cores."""
    results: dict[str, Any] = {}
    with redis_server() as redis_url, tempfile.TemporaryDirectory(prefix="acp-bench-") as scratch:
        stores = (
            ("sqlite", ["--state-db", f"{scratch}/devices.sqlite3"]),
            ("redis", ["--store", redis_url, "--replica-id", "bench"]),
        )
        for repeat in range(args.repeats):  # interleaved: the machine's speed drifts between runs
            for store, extra in stores:
                runs = results.setdefault(store, {})
                server, metrics_port = project_server(logs / f"cost-{store}-{repeat}.log", extra)
                target = f"127.0.0.1:{server.port}"
                try:
                    streaming = loadgen(target, server.pid, "streaming", args.stream_devices, args.duration)
                    trips_before = metric(metrics_port, "acp_store_round_trips_total")
                    saves_before = metric(metrics_port, "acp_state_saves_total")
                    presses = loadgen(
                        target,
                        server.pid,
                        "mode-presses",
                        args.press_devices,
                        args.duration,
                        "--rate",
                        str(args.press_rate),
                    )
                    trips = metric(metrics_port, "acp_store_round_trips_total") - trips_before
                    saves = metric(metrics_port, "acp_state_saves_total") - saves_before
                    by_purpose = {
                        purpose: metric(metrics_port, "acp_store_round_trips_total", f'purpose="{purpose}"')
                        for purpose in ("save", "fleet", "claim", "operator", "heartbeat", "liveness")
                    }
                finally:
                    server.stop()
                run = {
                    "cpu_us_per_packet": streaming["usage"]["server"]["cpu_us_per_packet"],
                    "streaming_on_time": streaming["streams"]["on_time"] if "streams" in streaming else None,
                    "cpu_us_per_press": presses["usage"]["server"]["cpu_us_per_press"],
                    "presses_per_s": presses["usage"]["server"]["presses_per_s"],
                    "press_to_led_p99_ms": presses["latency"]["press_to_led"].get("p99_ms"),
                    "state_saves": saves,
                    "store_requests": trips,
                    "store_requests_by_purpose_total": by_purpose,
                }
                for key, value in run.items():
                    runs.setdefault(key, []).append(value)
                print(f"cost {store} #{repeat}: {run}", file=sys.stderr)
    sqlite, shared = results["sqlite"], results["redis"]
    results["ratios"] = {
        "cpu_per_packet": _ratio(shared["cpu_us_per_packet"], sqlite["cpu_us_per_packet"]),
        "cpu_per_press": _ratio(shared["cpu_us_per_press"], sqlite["cpu_us_per_press"]),
    }
    presses_made = [p * args.duration for p in shared["presses_per_s"]]
    results["redis_requests_per_press"] = [
        round(trips / made, 3)
        for trips, made in zip(shared["store_requests"], presses_made, strict=True)
        if made
    ]
    return results


def _ratio(values: list[float], baseline: list[float]) -> float:
    return round(float(np.median(values)) / float(np.median(baseline)), 3)


def commands(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Mode commands through replica A's API for devices on replica B: POST → the device's LEDs."""
    with redis_server() as redis_url:
        admin_a = free_port()
        a, _ = project_server(
            logs / "commands-a.log", ["--store", redis_url, "--replica-id", "a", "--admin-port", str(admin_a)]
        )
        b, _ = project_server(logs / "commands-b.log", ["--store", redis_url, "--replica-id", "b"])
        try:
            return asyncio.run(_commands(f"127.0.0.1:{b.port}", f"http://127.0.0.1:{admin_a}", args))
        finally:
            a.stop()
            b.stop()


async def _commands(target: str, api: str, args: argparse.Namespace) -> dict[str, Any]:
    devices = [
        SimulatedDevice(target, f"cmd-{n:03d}", play_in_real_time=False) for n in range(args.command_devices)
    ]
    for device in devices:
        await device.connect()
        await device.wait_for_first_set(10)
    to_leds: list[float] = []
    replies: list[float] = []
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        deadline = time.monotonic() + 10
        while (await client.get(f"/api/devices/{devices[-1].device_id}")).json().get("replica") != "b":
            assert time.monotonic() < deadline, "replica a never saw the devices on b"
            await asyncio.sleep(0.05)
        for number in range(args.commands):
            device = devices[number % len(devices)]
            mode = 1 + number % 4 if _shown_mode(device) != 1 + number % 4 else 0
            sent = time.perf_counter()
            reply = await client.post(f"/api/devices/{device.device_id}/mode", json={"mode": mode})
            replied = time.perf_counter()
            assert reply.status_code == 200, reply.text
            await device.wait_for_leds(functools.partial(_shows, mode=mode), 5)
            to_leds.append(time.perf_counter() - sent)
            replies.append(replied - sent)
            await asyncio.sleep(0.01)
    for device in devices:
        await device.disconnect()
    return {
        "commands": args.commands,
        "post_to_leds_ms": _summary(to_leds),
        "api_reply_ms": _summary(replies),
    }


def _shows(leds: Any, mode: int) -> bool:
    return [rgba >> 8 for rgba in leds[1:]] == [rgba >> 8 for rgba in (STATUS_IDLE.rgba, *mode_leds(mode))]


def _shown_mode(device: SimulatedDevice) -> int | None:
    return next((mode for mode in range(5) if _shows(device.leds, mode)), None)


def _summary(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "max": round(float(values.max()), 2),
    }


def failover(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Three replicas behind HAProxy, 300 reconnecting devices; SIGKILL one replica, time the return."""
    from tests.proxy import haproxy  # the shipped config, as the tests run it

    with redis_server() as redis_url:
        ports = [free_port() for _ in range(3)]
        admins = [free_port() for _ in range(3)]

        def start(index: int) -> ServerProcess:
            server, _ = project_server(
                logs / f"failover-{index}.log",
                [
                    *("--port", str(ports[index]), "--admin-port", str(admins[index])),
                    *("--store", redis_url, "--replica-id", f"replica{index + 1}", "--grace", "2"),
                    *("--metrics-port", "-1"),
                ],
                cores=(),
            )
            return server

        replicas = [start(index) for index in range(3)]
        try:
            with haproxy([f"127.0.0.1:{port}" for port in ports]) as front_door:
                runs = asyncio.run(_failover(front_door, replicas, admins, start, args))
        finally:
            for replica in replicas:
                replica.stop()
    return {"runs_s": runs, "max_s": max(runs), "devices": args.failover_devices}


async def _failover(
    front_door: str,
    replicas: list[ServerProcess],
    admins: list[int],
    start: Any,
    args: argparse.Namespace,
) -> list[float]:
    devices = [
        SimulatedDevice(front_door, f"fo-{n:03d}", play_in_real_time=False)
        for n in range(args.failover_devices)
    ]
    reconnectors = [Reconnector(device, Backoff()) for device in devices]
    for reconnector in reconnectors:
        reconnector.start()
    await _until(lambda: all(device.established for device in devices), 60)
    for device in devices[::2]:
        await device.press(Button.MODE)
    runs: list[float] = []
    try:
        for run in range(args.failover_runs):
            victim = run % 3
            async with httpx.AsyncClient(timeout=10) as client:
                listing = (
                    await client.get(
                        f"http://127.0.0.1:{admins[(victim + 1) % 3]}/api/devices",
                        params={"connected": "true", "limit": "1000"},
                    )
                ).json()["devices"]
            held = {d["device_id"] for d in listing if d["replica"] == f"replica{victim + 1}"}
            moved = [device for device in devices if device.device_id in held]
            modes = {device.device_id: _shown_mode(device) for device in moved}
            connections = {device.device_id: device.connections for device in moved}
            killed = time.monotonic()
            replicas[victim].process.send_signal(signal.SIGKILL)
            replicas[victim].process.wait()
            await _until(
                lambda moved=moved, modes=modes, connections=connections: all(
                    device.connections > connections[device.device_id]
                    and device.established
                    and _shown_mode(device) == modes[device.device_id]
                    for device in moved
                ),
                60,
            )
            runs.append(round(time.monotonic() - killed, 2))
            print(f"failover #{run}: {len(moved)} devices back in {runs[-1]} s", file=sys.stderr)
            replicas[victim] = start(victim)
            await asyncio.sleep(3 + random.random())
    finally:
        await asyncio.gather(*(reconnector.stop() for reconnector in reconnectors))
    return runs


async def _until(condition: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="cost,commands,failover")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-devices", type=int, default=180)
    parser.add_argument("--press-devices", type=int, default=1000)
    parser.add_argument("--press-rate", type=float, default=1.0)
    parser.add_argument("--command-devices", type=int, default=50)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--failover-devices", type=int, default=300)
    parser.add_argument("--failover-runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    steps = {"cost": cost, "commands": commands, "failover": failover}
    report: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="acp-bench-logs-") as logs:
        for name in args.steps.split(","):
            report[name] = steps[name](args, Path(logs))
            print(json.dumps({name: report[name]}, indent=1), file=sys.stderr)
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
