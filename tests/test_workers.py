"""``--workers N``: server processes sharing the port under one parent, as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from actors.config import ServerConfig
from actors.leds import STATUS_IDLE, mode_leds
from bench import frozen_device
from cluster.workers import RestartPolicy, may_restart, shifted_port, worker_command
from simulator import Button, SimulatedDevice
from tests.audio_files import write_tone
from tests.live import run, shows
from tests.proxy import free_port, free_ports_in_a_row
from tests.server_process import ServerProcess


def test_a_worker_may_restart_until_it_died_too_often_within_the_window() -> None:
    policy = RestartPolicy(max_restarts=2, window=60.0)
    assert may_restart([10.0], 10.0, policy)
    assert may_restart([10.0, 20.0], 20.0, policy)
    assert not may_restart([10.0, 20.0, 30.0], 30.0, policy)
    assert may_restart([10.0, 20.0, 80.0], 80.0, policy), "deaths older than the window are forgiven"


def test_each_worker_has_its_own_metrics_and_admin_port() -> None:
    assert [shifted_port(8080, index) for index in range(3)] == [8080, 8081, 8082]
    assert shifted_port(0, 2) == 0, "0 (a free port) stays free"
    assert shifted_port(-1, 2) == -1, "off stays off"


def test_a_workers_command_line_is_the_parents_with_its_own_index_and_ports() -> None:
    config = ServerConfig(port=50051, workers=2, metrics_port=9095, admin_port=8080)
    command = worker_command(["--workers", "2", "--modes", "3"], config, 1)
    assert command[1:3] == ["-m", "actors.main"]
    assert command[3:7] == ["--workers", "2", "--modes", "3"]
    assert command[7:] == ["--workers=1", "--worker-index=1", "--metrics-port=9096", "--admin-port=8081"]


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def holder(admin_ports: list[int], device_id: str) -> int | None:
    """The index of the worker whose operator API has the device connected."""
    for index, port in enumerate(admin_ports):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            reply = client.get(f"/api/devices/{device_id}")
            if reply.status_code == 200 and reply.json()["connected"]:
                return index
    return None


def wait_serving(admin_ports: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for port in admin_ports:
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/devices", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"no operator API on {port}"
                time.sleep(0.1)


def test_two_workers_serve_share_state_and_a_dead_worker_is_restarted(tmp_path: Path) -> None:
    port, admin = free_port(), free_ports_in_a_row(2)
    admin_ports = [admin, admin + 1]
    server = ServerProcess(
        tmp_path / "server.log",
        *("--workers", "2", "--port", str(port), "--admin-port", str(admin)),
        *("--state-db", str(tmp_path / "state.db"), "--modes", "4"),
    )
    try:
        wait_serving(admin_ports)
        workers = children(server.process.pid)
        assert len(workers) == 2

        async def scenario() -> None:
            target = f"127.0.0.1:{port}"
            # Both workers serve: the kernel spreads new connections over them.
            held: dict[int, list[str]] = {0: [], 1: []}
            for number in range(40):
                device = SimulatedDevice(target, f"dev-{number}", play_in_real_time=False)
                await device.connect()
                await device.wait_for_first_set(5)
                index = holder(admin_ports, device.device_id)
                assert index is not None
                held[index].append(device.device_id)
                await device.disconnect()
                if held[0] and held[1]:
                    break
            assert held[0], f"worker 0 got no connection: {held}"
            assert held[1], f"worker 1 got no connection: {held}"
            # A device that moves to the other worker keeps its state.
            device = SimulatedDevice(target, "mover", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            first = holder(admin_ports, "mover")
            assert await device.press(Button.MODE)
            assert await device.press(Button.MODE)
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
            for _ in range(40):
                await device.disconnect()
                await asyncio.sleep(0.2)  # the old worker saves the device as it retires it
                await device.connect()
                await device.wait_for_first_set(5)
                if holder(admin_ports, "mover") != first:
                    break
            assert holder(admin_ports, "mover") != first, "never reached the other worker"
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
            await device.disconnect()

        run(scenario, timeout=120)

        # A worker killed outright is started again, and serves.
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while set(children(server.process.pid)) & {workers[0]} or len(children(server.process.pid)) < 2:
            assert time.monotonic() < deadline, "the dead worker was not restarted"
            time.sleep(0.1)
        wait_serving(admin_ports)
        assert "restarted as pid" in server.output
        # SIGTERM to the parent drains and stops every worker, and the parent exits 0.
        running = children(server.process.pid)
        assert server.stop(signal.SIGTERM, timeout=30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in running)
    finally:
        server.kill()


def test_a_frozen_device_that_reconnected_to_another_worker_keeps_its_acked_presses(tmp_path: Path) -> None:
    """The stale worker's late final save (its connection froze, then died) is refused by the
    device's lease in the shared SQLite file: the presses acked on the other worker stay."""
    port, admin = free_port(), free_ports_in_a_row(2)
    admin_ports = [admin, admin + 1]
    server = ServerProcess(
        tmp_path / "server.log",
        *("--workers", "2", "--port", str(port), "--admin-port", str(admin)),
        *("--state-db", str(tmp_path / "state.db"), "--modes", str(frozen_device.MODES)),
    )
    try:
        wait_serving(admin_ports)

        async def scenario() -> None:
            report = await frozen_device.trials(f"127.0.0.1:{port}", admin_ports, count=3)
            assert report["trials"] == 3
            assert report["lost"] == 0, report["lost_trials"]

        run(scenario, timeout=120)
    finally:
        server.kill()


def test_a_sound_uploaded_on_one_worker_is_assigned_on_the_other_and_every_worker_plays_it(
    tmp_path: Path,
) -> None:
    port, admin = free_port(), free_ports_in_a_row(2)
    admin_ports = [admin, admin + 1]
    bell = write_tone(tmp_path / "bell.wav", freq=660, seconds=0.5).read_bytes()
    server = ServerProcess(
        tmp_path / "server.log",
        *("--workers", "2", "--port", str(port), "--admin-port", str(admin)),
        *("--state-db", str(tmp_path / "state.db"), "--modes", "4"),
    )
    try:
        wait_serving(admin_ports)
        first, second = (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) for port in admin_ports
        )
        with first, second:
            uploaded = first.put("/api/sounds/bell", content=bell, headers={"Content-Type": "audio/wav"})
            assert uploaded.status_code == 201, uploaded.text
            deadline = time.monotonic() + 10
            while "bell" not in [sound["name"] for sound in second.get("/api/sounds").json()["sounds"]]:
                assert time.monotonic() < deadline, "the other worker never saw the upload"
                time.sleep(0.1)
            assert second.put("/api/modes/2", json={"sound": "bell"}).status_code == 200
            while first.get("/api/modes").json()["modes"][2]["sound"] != "bell":
                assert time.monotonic() < deadline, "the first worker never saw the assignment"
                time.sleep(0.1)
    finally:
        server.kill()


def test_workers_stop_when_their_master_is_killed_outright(tmp_path: Path) -> None:
    port, admin = free_port(), free_ports_in_a_row(2)
    server = ServerProcess(
        tmp_path / "server.log",
        *("--workers", "2", "--port", str(port), "--admin-port", str(admin)),
        *("--state-db", str(tmp_path / "state.db"), "--modes", "4"),
    )
    try:
        wait_serving([admin, admin + 1])
        workers = children(server.process.pid)
        assert len(workers) == 2
    finally:
        server.kill()  # SIGKILL: the master cannot pass anything on
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers still running without their master: {workers}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
