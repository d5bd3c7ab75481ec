"""Sounds managed at run time through the API: upload, assign, play, delete, and across a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from media.library import SoundLibrary
from simulator import Button
from tests.admin_live import Operated, operated
from tests.audio_files import dominant_frequency, write_tone
from tests.live import run

WAV = {"Content-Type": "audio/wav"}


@pytest.fixture(scope="module")
def bell(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real WAV file: 1.2 s of 660 Hz."""
    return write_tone(tmp_path_factory.mktemp("sounds") / "bell.wav", freq=660, seconds=1.2).read_bytes()


async def upload(op: Operated, name: str, data: bytes) -> None:
    response = await op.http.put(f"/api/sounds/{name}", content=data, headers=WAV)
    assert response.status_code in (200, 201), response.text


def test_an_uploaded_sound_assigned_to_a_mode_is_what_play_streams(
    library: SoundLibrary, bell: bytes
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            created = await op.http.put("/api/sounds/bell", content=bell, headers=WAV)
            assert created.status_code == 201
            assert created.json()["source"] == "uploaded"
            assert created.json()["duration"] == pytest.approx(1.2, abs=0.01)
            assigned = await op.http.put("/api/modes/0", json={"sound": "bell"})
            assert assigned.json() == {"mode": 0, "sound": "bell"}
            assert await kitchen.press(Button.PLAY)
            recording = (await kitchen.wait_for_recordings(1, 10))[0]
            assert len(recording.packets) == 60  # 1.2 s in 20 ms packets
            assert dominant_frequency(recording.pcm) == pytest.approx(660, abs=5)

    run(scenario)


def test_sounds_lists_every_source_and_which_mode_plays_what(library: SoundLibrary, bell: bytes) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            await upload(op, "bell", bell)
            await op.http.put("/api/modes/2", json={"sound": "bell"})
            body = (await op.http.get("/api/sounds")).json()
            by_name = {sound["name"]: sound for sound in body["sounds"]}
            assert by_name["builtin-0"]["source"] == "built-in"
            assert by_name["bell"] == {"name": "bell", "source": "uploaded", "duration": 1.2, "modes": [2]}
            assert {"mode": 2, "sound": "bell"} in body["modes"]
            assert (await op.http.get("/api/modes")).json()["modes"] == body["modes"]

    run(scenario)


def test_playing_a_sound_by_name(library: SoundLibrary, bell: bytes) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await upload(op, "bell", bell)
            response = await op.post("/api/devices/kitchen/play", {"sound": "bell"})
            assert response.json()["result"] == "started"
            assert response.json()["device"]["playing"]["sound"] == "bell"
            recording = (await kitchen.wait_for_recordings(1, 10))[0]
            assert dominant_frequency(recording.pcm) == pytest.approx(660, abs=5)

    run(scenario)


def test_an_undecodable_upload_is_422_and_the_sound_in_use_keeps_playing(
    library: SoundLibrary, bell: bytes
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await upload(op, "bell", bell)
            await op.post("/api/devices/kitchen/play", {"sound": "bell"})
            response = await op.http.put("/api/sounds/bell", content=b"this is not audio" * 100, headers=WAV)
            assert response.status_code == 422
            assert "FFmpeg" in response.json()["detail"]
            recording = (await kitchen.wait_for_recordings(1, 10))[0]
            assert len(recording.packets) == 60
            listed = {s["name"]: s for s in (await op.http.get("/api/sounds")).json()["sounds"]}
            assert listed["bell"]["duration"] == 1.2

    run(scenario)


def test_an_upload_over_the_size_limit_is_413(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_max_upload_mb=0.01) as op:
            response = await op.http.put("/api/sounds/big", content=b"\0" * 20_000, headers=WAV)
            assert response.status_code == 413
            assert "0.01 MB" in response.json()["detail"]

    run(scenario)


def test_upload_names_are_checked(library: SoundLibrary, bell: bytes) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            assert (await op.http.put("/api/sounds/builtin-1", content=bell, headers=WAV)).status_code == 409
            assert (await op.http.put("/api/sounds/builtin-99", content=bell, headers=WAV)).status_code == 422
            assert (
                await op.http.put("/api/sounds/has%20space", content=bell, headers=WAV)
            ).status_code == 422
            assert (await op.http.put("/api/sounds/empty", content=b"", headers=WAV)).status_code == 422

    run(scenario)


def test_a_sound_a_mode_plays_cannot_be_deleted_until_another_is_assigned(
    library: SoundLibrary, bell: bytes
) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            await upload(op, "bell", bell)
            await op.http.put("/api/modes/1", json={"sound": "bell"})
            refused = await op.http.delete("/api/sounds/bell")
            assert refused.status_code == 409
            assert "mode 1" in refused.json()["detail"]
            await op.http.put("/api/modes/1", json={"sound": "builtin-1"})
            assert (await op.http.delete("/api/sounds/bell")).status_code == 204
            assert (await op.http.delete("/api/sounds/bell")).status_code == 404
            assert (await op.http.delete("/api/sounds/builtin-0")).status_code == 409

    run(scenario)


def test_assigning_to_a_missing_mode_or_sound_is_422(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            assert (await op.http.put("/api/modes/5", json={"sound": "builtin-0"})).status_code == 422
            assert (await op.http.put("/api/modes/0", json={"sound": "nothing"})).status_code == 422

    run(scenario)


def test_uploads_and_assignments_survive_a_restart(
    library: SoundLibrary, bell: bytes, tmp_path: Path
) -> None:
    state_db = str(tmp_path / "state" / "devices.sqlite3")

    async def scenario() -> None:
        async with operated(library, state_db=state_db) as op:
            await upload(op, "bell", bell)
            await op.http.put("/api/modes/3", json={"sound": "bell"})
        assert (tmp_path / "state" / "sounds").is_dir()
        async with operated(library, state_db=state_db) as op, op.device("kitchen") as kitchen:
            assert {"mode": 3, "sound": "bell"} in (await op.http.get("/api/sounds")).json()["modes"]
            await op.until_device("kitchen", lambda d: d["connected"])
            assert (await op.post("/api/devices/kitchen/mode", {"mode": 3})).status_code == 200
            assert await kitchen.press(Button.PLAY)
            recording = (await kitchen.wait_for_recordings(1, 10))[0]
            assert dominant_frequency(recording.pcm) == pytest.approx(660, abs=5)

    run(scenario)


def test_sound_changes_are_in_the_audit_log(library: SoundLibrary, bell: bytes) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            await upload(op, "bell", bell)
            await op.http.put("/api/modes/1", json={"sound": "bell"})
            entries = (await op.http.get("/api/audit")).json()["entries"]
            assert [(e["action"], e["target"]) for e in entries] == [
                ("mode.assign", "1"),
                ("sound.put", "bell"),
            ]

    run(scenario)


def test_an_upload_without_stored_packets_is_encoded_again_once_the_server_serves(
    library: SoundLibrary, bell: bytes, tmp_path: Path
) -> None:
    state_db = str(tmp_path / "state" / "devices.sqlite3")
    packets = tmp_path / "state" / "sounds" / "uploads" / "bell.packets"

    async def scenario() -> None:
        async with operated(library, state_db=state_db) as op:
            await upload(op, "bell", bell)
            await op.http.put("/api/modes/3", json={"sound": "bell"})
        stored = packets.read_bytes()
        packets.unlink()
        async with operated(library, state_db=state_db) as op, op.device("kitchen") as kitchen:
            async with asyncio.timeout(10):
                while "bell" not in {s["name"] for s in (await op.http.get("/api/sounds")).json()["sounds"]}:
                    await asyncio.sleep(0.02)
            assert {"mode": 3, "sound": "bell"} in (await op.http.get("/api/modes")).json()["modes"]
            assert packets.read_bytes() == stored
            await op.until_device("kitchen", lambda d: d["connected"])
            assert (await op.post("/api/devices/kitchen/mode", {"mode": 3})).status_code == 200
            assert await kitchen.press(Button.PLAY)
            recording = (await kitchen.wait_for_recordings(1, 10))[0]
            assert dominant_frequency(recording.pcm) == pytest.approx(660, abs=5)

    run(scenario)
