"""The operator port under abuse: idle sockets and a huge body, while devices press and play.

    python -m bench.admin_abuse                     # 1,000 idle connections from one address, a 300 MB body
    python -m bench.admin_abuse --addresses 100     # the connections from 100 loopback addresses

The project server runs on core 0 with its default limits and the operator API on a free loopback
port; this process (the devices) and the attacker (a process of its own, so its work does not
delay the devices' loop) on core 1. JSON on stdout (and ``--out``):

- ``idle``: N connections opened at once, every other one sending half a request, each held until
  the server closes it (connect→close), for at most a minute. Beyond the server's cap they wait in
  its listen backlog, and beyond that the kernel drops their handshakes: an idle one the kernel
  dropped looks open to the client but the server never had it, so it is never closed (counted as
  ``still_open_after_hold``). What the server holds is read from /proc/net/tcp every 0.25 s
  (``server_side_established``: its accepted and backlogged connections). Meanwhile 10 connected
  devices press Mode five times a second (press→ack, before and during), and new devices connect
  one after another (connect→first LED SET).
- ``body``: a 300 MB JSON body announced by ``Content-Length``, then one chunked, three of each,
  streamed from one thread while another reads the answer: headers sent→the 413's status line.
  Meanwhile a device plays a long sound: the longest gap between its audio packets during the
  attempts, and before.
- ``json``: bodies just under the 1 MB limit that are slow to parse or to refuse (70,000 unknown
  keys, 100,000 bad device ids, 80,000 real ones, 1 MB of whitespace), three of each: status and
  reply time, and press→ack of 5 devices pressing Stop 16 times a second each (within their event
  rate), a press every 12 ms in all: the event loop's stalls, as devices see them.

Targets: a new device within 1 s, press→ack p99 ≤ 50 ms, idle sockets closed within 10 s, 413
within 100 ms, no audio stall.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import re
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.proc import ServerProcess, established_connections, pin_self
from bench.stats import summary
from simulator import Button, SimulatedDevice

PROBES = 10
PRESS_INTERVAL = 0.2
NEWCOMERS = 5
BODY_BYTES = 300_000_000
ATTEMPTS = 3
HOLD_SECONDS = 60.0


class Presses:
    def __init__(self) -> None:
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {"before": [], "during": []}
        self.nacked = 0

    async def press_forever(self, device: SimulatedDevice) -> None:
        while True:
            started = time.monotonic()
            phase = self.phase
            if await device.press(Button.MODE):
                self.latencies[phase].append(time.monotonic() - started)
            else:
                self.nacked += 1
            await asyncio.sleep(PRESS_INTERVAL)


async def hold_idle(port: int, source: str, half_sent: bool, times: list[float]) -> None:
    """One attacker's connection, held until the server closes it; connect→close goes to ``times``."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        return
    try:
        if half_sent:
            writer.write(b"GET /api/devices HTTP/1.1\r\nHost: localhost\r\n")
        async with asyncio.timeout(HOLD_SECONDS):
            while await reader.read(65536):
                pass
        times.append(time.monotonic() - started)
    except ConnectionResetError:
        times.append(time.monotonic() - started)
    except TimeoutError:
        pass
    finally:
        writer.close()


def flood(admin_port: int, connections: int, addresses: int, report: Connection) -> None:
    """The attacker's process: every connection opened at once and held; their times sent back."""

    async def all_of_them() -> list[float]:
        closed: list[float] = []
        sources = [f"127.0.0.{2 + n % addresses}" for n in range(connections)]
        await asyncio.gather(
            *(hold_idle(admin_port, source, n % 2 == 1, closed) for n, source in enumerate(sources))
        )
        return closed

    report.send(asyncio.run(all_of_them()))


async def newcomer_connects(target: str, number: int) -> float:
    started = time.monotonic()
    async with SimulatedDevice(target, f"newcomer-{number}", play_in_real_time=False) as device:
        await device.wait_for_first_set(10)
        return time.monotonic() - started


async def idle_step(target: str, admin_port: int, connections: int, addresses: int) -> dict[str, Any]:
    presses = Presses()
    devices = [SimulatedDevice(target, f"probe-{n}", play_in_real_time=False) for n in range(PROBES)]
    for device in devices:
        await device.connect()
        await device.wait_for_first_set(10)
    pressing = [asyncio.create_task(presses.press_forever(device)) for device in devices]
    await asyncio.sleep(3)
    presses.phase = "during"
    results, report = multiprocessing.Pipe(duplex=False)
    attacker = multiprocessing.get_context("spawn").Process(
        target=flood, args=(admin_port, connections, addresses, report), daemon=True
    )
    started = time.monotonic()
    attacker.start()
    held: list[tuple[float, int]] = []

    async def watch_server_side() -> None:
        while True:
            held.append((time.monotonic() - started, established_connections(admin_port)))
            await asyncio.sleep(0.25)

    watching = asyncio.create_task(watch_server_side())
    await asyncio.sleep(1)
    newcomers = [await newcomer_connects(target, n) for n in range(NEWCOMERS)]
    closed: list[float] = await asyncio.to_thread(results.recv)
    attacker.join()
    await asyncio.sleep(0.5)  # a last look at what the server holds
    for task in (*pressing, watching):
        task.cancel()
    peak = max(count for _, count in held)
    drained = next((at for at, count in held if at > 1 and count == 0), None)
    for device in devices:
        await device.disconnect()
    return {
        "connections": connections,
        "client_addresses": addresses,
        "closed_by_server": len(closed),
        "still_open_after_hold": connections - len(closed),
        "connect_to_close": summary(closed),
        "server_side_established": {"peak": peak, "none_left_after_s": drained},
        "newcomer_connect_to_first_set": summary(newcomers),
        "press_to_ack_before": summary(presses.latencies["before"]),
        "press_to_ack_during": summary(presses.latencies["during"]),
        "presses_nacked": presses.nacked,
    }


def refused_body(admin_port: int, chunked: bool) -> float:
    """Headers sent → the 413's status line read, while another thread streams the body flat out."""
    sock = socket.create_connection(("127.0.0.1", admin_port), timeout=30)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % BODY_BYTES
    sock.sendall(
        b"POST /api/announce HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n%s\r\n\r\n"
        % framing
    )
    started = time.monotonic()

    def stream() -> None:
        piece = b" " * 1_000_000
        chunk = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
        try:
            for _ in range(BODY_BYTES // len(piece)):
                sock.sendall(chunk)
        except OSError:  # closed: by the server after its answer, or by us
            pass

    sending = threading.Thread(target=stream, daemon=True)
    sending.start()
    reply = b""
    while b"\r\n" not in reply and (data := sock.recv(4096)):
        reply += data
    took = time.monotonic() - started
    sock.shutdown(socket.SHUT_RDWR)
    sending.join()
    sock.close()
    if b" 413 " not in reply.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"expected 413, got {reply[:100]!r}")
    return took


def longest_gap(arrivals: list[float], start: float, end: float) -> float:
    inside = [at for at in arrivals if start <= at <= end]
    return max((b - a for a, b in itertools.pairwise(inside)), default=0.0)


async def body_step(admin_port: int, target: str) -> dict[str, Any]:
    async with SimulatedDevice(target, "player", play_in_real_time=False) as player:
        await player.wait_for_first_set(10)
        await player.press(Button.MODE)  # mode 1: the 32 s sound
        await player.press(Button.PLAY)
        await asyncio.sleep(2)
        before = time.monotonic() - 1.5
        results: dict[str, Any] = {}
        for name, chunked in (("content_length", False), ("chunked", True)):
            started = time.monotonic()
            took = [await asyncio.to_thread(refused_body, admin_port, chunked) for _ in range(ATTEMPTS)]
            await asyncio.sleep(0.5)
            arrivals = player.recordings[-1].arrivals
            results[name] = {
                "to_413_ms": [round(seconds * 1000, 1) for seconds in took],
                "longest_audio_gap_ms": round(longest_gap(arrivals, started, time.monotonic()) * 1000, 1),
            }
        arrivals = player.recordings[-1].arrivals
        results["longest_audio_gap_before_ms"] = round(longest_gap(arrivals, before, before + 1.5) * 1000, 1)
        await player.press(Button.STOP)
        return results


def heavy_bodies() -> dict[str, tuple[str, bytes]]:
    def announce(target: Any) -> bytes:
        return json.dumps({"sound": "builtin-0", "target": target}).encode()

    return {
        "70k_unknown_keys": ("/api/announce", announce({f"k{n}": 0 for n in range(70_000)})),
        "100k_bad_device_ids": ("/api/announce", announce({"devices": [0] * 100_000})),
        "80k_device_ids": ("/api/announce", announce({"devices": [f"d{n:07d}" for n in range(80_000)]})),
        "1mb_whitespace": ("/api/devices/prober-0/mode", b" " * 999_980 + b'{"mode": 1}'),
    }


def post(admin_port: int, path: str, body: bytes) -> tuple[int, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", admin_port), timeout=30) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        reply = b""
        while data := sock.recv(65536):
            reply += data
    return int(reply.split(b" ", 2)[1]), time.monotonic() - started


async def press_stop(device: SimulatedDevice, offset: float, acks: list[float]) -> None:
    await asyncio.sleep(offset)
    while True:
        started = time.monotonic()
        await device.press(Button.STOP)
        acks.append(time.monotonic() - started)
        await asyncio.sleep(max(0.0, 0.0625 - (time.monotonic() - started)))


async def json_step(admin_port: int, target: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    probers = [SimulatedDevice(target, f"prober-{n}", play_in_real_time=False) for n in range(5)]
    for prober in probers:
        await prober.connect()
        await prober.wait_for_first_set(10)
    try:
        for name, (path, body) in heavy_bodies().items():
            acks: list[float] = []
            pressing = [asyncio.create_task(press_stop(p, n * 0.0125, acks)) for n, p in enumerate(probers)]
            await asyncio.sleep(0.5)
            replies = [await asyncio.to_thread(post, admin_port, path, body) for _ in range(ATTEMPTS)]
            await asyncio.sleep(0.2)
            for task in pressing:
                task.cancel()
            results[name] = {
                "bytes": len(body),
                "status": sorted({status for status, _ in replies}),
                "reply_ms": [round(took * 1000, 1) for _, took in replies],
                "press_to_ack": summary(acks),
            }
    finally:
        for prober in probers:
            await prober.disconnect()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--addresses", type=int, default=1, help="loopback source addresses to spread them over"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    log = Path("/tmp/bench-admin-abuse-server.log")
    command = [sys.executable, "-m", "actors.main", "--host", "127.0.0.1", "--port", "0"]
    command += ["--metrics-port", "-1", "--admin-port", "0", "--state-db", ":memory:"]
    server = ServerProcess(command, log, cores=(0,))
    pin_self((1,))
    try:
        text = log.read_text()
        found = re.search(r"dashboard on http://127\.0\.0\.1:(\d+)/", text)
        budget = re.search(r"file descriptors: .*", text)
        assert found is not None
        target, admin_port = f"127.0.0.1:{server.port}", int(found.group(1))
        report: dict[str, Any] = {
            "pinning": {"server": server.affinity, "bench": [1]},
            "budget": budget.group(0) if budget else None,
            "idle": asyncio.run(idle_step(target, admin_port, args.connections, args.addresses)),
            "body": asyncio.run(body_step(admin_port, target)),
            "json": asyncio.run(json_step(admin_port, target)),
        }
    finally:
        server.stop()
    report["server_log"] = {"bytes": log.stat().st_size, **server.log_problems()}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
