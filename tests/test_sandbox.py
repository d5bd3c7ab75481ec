"""Decoding in child processes: the same sound as decoding in-process, each limit met with a refusal
that names it, a cap on children at once, and a stop that leaves none running. Real children, real
FFmpeg, real libopus."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from media.decode import SoundFileError, decode_pcm_bytes
from media.library import encode_sound
from media.sandbox import DecodeBusy, DecodeJob, DecodeSandbox, SandboxLimits
from tests.audio_files import tone, write_audio, write_tone
from tests.live import run


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tone(tmp_path_factory.mktemp("sandbox") / "short.wav", 440.0, seconds=1.0).read_bytes()


@pytest.fixture(scope="module")
def long(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Ten minutes at 8 kHz (10 MB): seconds of work for a child, resampled and encoded at 48 kHz."""
    path = tmp_path_factory.mktemp("sandbox") / "long.wav"
    return write_audio(path, tone(440.0, 600.0, 8_000), rate=8_000, codec="pcm_s16le").read_bytes()


def job(data: bytes, name: str = "clip") -> DecodeJob:
    return DecodeJob(name, data, 20, f"sound {name!r}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def environment_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def test_a_sound_decoded_in_a_child_is_what_decoding_here_gives(short: bytes) -> None:
    async def scenario() -> None:
        sound = await DecodeSandbox().encode(job(short))
        assert sound == encode_sound("clip", decode_pcm_bytes(short, "sound 'clip'"), 20)

    run(scenario)


def test_a_file_the_child_refuses_is_refused_with_its_reason() -> None:
    async def scenario() -> None:
        with pytest.raises(
            SoundFileError, match=r"^sound 'clip': concat \(.*\) is not an accepted audio format"
        ):
            await DecodeSandbox().encode(job(b"ffconcat version 1.0\nfile /etc/passwd\n"))

    run(scenario)


def test_a_child_over_its_memory_limit_is_refused_naming_the_limit(long: bytes) -> None:
    async def scenario() -> None:
        sandbox = DecodeSandbox(SandboxLimits(memory_bytes=32 * 2**20))
        with pytest.raises(SoundFileError, match=r"^sound 'clip': exceeded the memory limit of 32 MB"):
            await sandbox.encode(job(long))

    run(scenario)


def test_a_child_over_its_cpu_time_is_refused_naming_the_limit(long: bytes) -> None:
    async def scenario() -> None:
        sandbox = DecodeSandbox(SandboxLimits(cpu_seconds=1))
        with pytest.raises(
            SoundFileError, match=r"^sound 'clip': used more than the 1 s of CPU time allowed"
        ):
            await sandbox.encode(job(long))

    run(scenario)


def test_a_child_over_its_wall_time_is_killed_and_refused_naming_the_limit(long: bytes) -> None:
    async def scenario() -> None:
        sandbox = DecodeSandbox(SandboxLimits(wall_seconds=0.5))
        decoding = asyncio.create_task(sandbox.encode(job(long)))
        async with asyncio.timeout(5):
            while not sandbox.running:
                await asyncio.sleep(0.01)
        (pid,) = sandbox.running
        with pytest.raises(SoundFileError, match=r"^sound 'clip': took longer than 0\.5 s to decode$"):
            await decoding
        assert not alive(pid)
        assert sandbox.running == []

    run(scenario)


def test_an_upload_finding_every_child_busy_is_told_to_come_back(short: bytes, long: bytes) -> None:
    async def scenario() -> None:
        sandbox = DecodeSandbox(SandboxLimits(concurrency=1, queue_seconds=0.1, retry_after_seconds=7))
        first = asyncio.create_task(sandbox.encode(job(long)))
        await asyncio.sleep(0)
        with pytest.raises(DecodeBusy, match="1 sounds are being decoded already") as busy:
            await sandbox.encode(job(short))
        assert busy.value.retry_after == 7
        assert (await first).duration == pytest.approx(600.0)

    run(scenario)


def test_background_work_waits_for_its_turn_one_at_a_time(short: bytes) -> None:
    async def scenario() -> None:
        sandbox = DecodeSandbox(SandboxLimits(concurrency=2, queue_seconds=0.0))
        sounds = await asyncio.gather(
            *(sandbox.encode(job(short, f"s{n}"), background=True) for n in range(3)),
        )
        assert [sound.name for sound in sounds] == ["s0", "s1", "s2"]

    run(scenario)


def test_closing_kills_the_children_and_refuses_new_work(short: bytes, long: bytes) -> None:
    async def scenario() -> None:
        sandbox = DecodeSandbox()
        decoding = asyncio.create_task(sandbox.encode(job(long)))
        async with asyncio.timeout(5):
            while not sandbox.running:
                await asyncio.sleep(0.01)
        (pid,) = sandbox.running
        sandbox.close()
        with pytest.raises(DecodeBusy, match="the server is stopping"):
            await decoding
        assert not alive(pid)
        with pytest.raises(DecodeBusy, match="the server is stopping"):
            await sandbox.encode(job(short))

    run(scenario)


def test_a_child_gets_none_of_the_servers_environment(long: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACP_STORE", "redis://:hunter2@redis:6379/0")

    async def scenario() -> None:
        sandbox = DecodeSandbox()
        decoding = asyncio.create_task(sandbox.encode(job(long)))
        async with asyncio.timeout(5):
            while not sandbox.running:
                await asyncio.sleep(0.01)
        environment = environment_of(sandbox.running[0])
        sandbox.close()
        with pytest.raises(DecodeBusy):
            await decoding
        assert b"hunter2" not in environment
        assert b"ACP_" not in environment

    run(scenario)


def test_blocking_callers_get_each_jobs_sound_or_refusal_in_order(short: bytes) -> None:
    results = DecodeSandbox().encode_blocking([job(short, "a"), job(b"not audio" * 50, "b"), job(short, "c")])
    assert [getattr(result, "name", None) for result in results] == ["a", None, "c"]
    assert isinstance(results[1], SoundFileError)
    assert "not an audio file FFmpeg can decode" in str(results[1])
