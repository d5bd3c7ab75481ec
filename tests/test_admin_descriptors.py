"""Idle HTTP sockets cannot take the descriptors devices need: the server as a process, at 160 descriptors.

Both HTTP ports: the operator API's and the metrics port, which answers anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
import urllib.request
from pathlib import Path

from simulator import Button, SimulatedDevice
from tests.server_process import ServerProcess

DESCRIPTORS = 160
FLOOD = 180
"""More connections than the process has descriptors."""
TIMEOUT = 1.0


async def hold(port: int, half_sent: bool, closed: list[bool]) -> None:
    """One attacker's connection: nothing sent, or half a request; held until the server closes it."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        if half_sent:
            writer.write(b"GET /api/devices HTTP/1.1\r\nHost: localhost\r\nX-Never-Ends: ")
        while await reader.read(65536):
            pass
        closed.append(True)
    except ConnectionResetError:
        closed.append(True)
    finally:
        writer.close()


def test_idle_and_half_sent_admin_connections_at_a_small_descriptor_limit_leave_devices_served(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        tmp_path / "server.log",
        "--admin-port",
        "0",
        "--admin-header-timeout",
        str(TIMEOUT),
        descriptor_limit=DESCRIPTORS,
    )

    async def scenario() -> None:
        async with SimulatedDevice(server.target, "before", play_in_real_time=False) as before:
            await before.wait_for_first_set(5)
            closed: list[bool] = []
            flood = [asyncio.create_task(hold(server.admin_port, n % 2 == 1, closed)) for n in range(FLOOD)]
            await asyncio.sleep(2 * TIMEOUT)  # the flood holds every connection the API accepts
            async with SimulatedDevice(server.target, "after", play_in_real_time=False) as after:
                await after.wait_for_first_set(5)
                acks = [await device.press(Button.MODE) for _ in range(10) for device in (before, after)]
            assert acks == [True] * 20
            async with asyncio.timeout(30):  # accepted in turn as the ones before them time out
                await asyncio.gather(*flood)
            assert len(closed) == FLOOD, "the server closed every connection"

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        with contextlib.suppress(AssertionError):
            server.stop()
        server.kill()
    log = server.output
    assert f"file descriptors: limit {DESCRIPTORS}," in log
    assert log.count("file descriptors:") == 1
    assert "out of system resource" not in log
    assert len(log) < 20_000, f"the log grew to {len(log):,} characters"


def test_idle_connections_to_the_metrics_port_at_a_small_descriptor_limit_leave_devices_served(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "server.log", "--metrics-port", "0", descriptor_limit=DESCRIPTORS)
    found = re.search(r"metrics on port (\d+)", server.output)
    assert found is not None
    metrics_port = int(found.group(1))
    held = []
    try:
        for _ in range(FLOOD):
            with contextlib.suppress(OSError):  # beyond the backlog the handshake is not answered
                held.append(socket.create_connection(("127.0.0.1", metrics_port), timeout=0.2))

        async def device_is_served() -> None:
            async with SimulatedDevice(server.target, "late", play_in_real_time=False) as late:
                await late.wait_for_first_set(5)
                assert await late.press(Button.MODE)

        asyncio.run(asyncio.wait_for(device_is_served(), 30))
        deadline = time.monotonic() + 30  # the idle ones time out and free their places
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as reply:
                    assert b"acp_connected_devices" in reply.read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the metrics port never answered again"
                time.sleep(0.5)
    finally:
        for sock in held:
            sock.close()
        with contextlib.suppress(AssertionError):
            server.stop()
        server.kill()
    assert "Traceback" not in server.output
