"""Hostile files uploaded through the real API: each is refused quickly with a 422 that says why, no
file or address it names is opened, and the server's memory stays put. Ordinary audio files of every
accepted format still work. Real server in-process, real FFmpeg, real files made here."""

from __future__ import annotations

import asyncio
import io
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from admin.app import MAX_UPLOADS_READING
from media.library import SoundLibrary
from media.sandbox import DecodeSandbox, SandboxLimits
from tests.admin_live import Operated, operated
from tests.audio_files import has_encoder, tone, vorbis_encoder, write_audio, write_tone
from tests.live import run
from tests.test_sandbox import alive

OCTETS = {"Content-Type": "application/octet-stream"}
MEMORY_GROWTH_LIMIT = 100 * 2**20


async def put(op: Operated, name: str, data: bytes) -> tuple[int, str]:
    response = await op.http.put(f"/api/sounds/{name}", content=data, headers=OCTETS)
    return response.status_code, response.json().get("detail", "")


async def listed(op: Operated) -> set[str]:
    return {sound["name"] for sound in (await op.http.get("/api/sounds")).json()["sounds"]}


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def wav_header(rate: int, data_size: int) -> bytes:
    """A WAV header for 8-bit mono PCM at `rate` declaring `data_size` bytes of samples."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body_size = 4 + 8 + len(fmt) + 8 + data_size
    return (
        b"RIFF"
        + struct.pack("<I", min(body_size, 0xFFFFFFFF))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A real sound file on the server's disk that no upload may reach: 1,234 Hz."""
    return write_tone(tmp_path / "secret.wav", freq=1234.0, seconds=1.0)


def test_an_ffconcat_file_naming_a_file_on_the_server_is_refused_unread(
    library: SoundLibrary, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(secret.parent)
    scripts = {
        "relative": b"ffconcat version 1.0\nfile secret.wav\n",
        "absolute": f"ffconcat version 1.0\nfile {secret}\n".encode(),
    }

    async def scenario() -> None:
        async with operated(library) as op:
            for name, script in scripts.items():
                status, detail = await put(op, name, script)
                assert status == 422
                assert "concat (Virtual concatenation script) is not an accepted audio format" in detail
                assert "WAV" in detail  # it says what is accepted
            assert not set(scripts) & await listed(op)

    run(scenario)


@pytest.fixture
def listening() -> Iterator[tuple[int, socket.socket, socket.socket]]:
    """A TCP listener on a loopback port and a UDP socket on the next (RTCP's), both non-blocking."""
    for _ in range(20):
        tcp = socket.create_server(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port + 1))
        except OSError:
            tcp.close()
            udp.close()
            continue
        tcp.setblocking(False)
        udp.setblocking(False)
        try:
            yield port, tcp, udp
        finally:
            tcp.close()
            udp.close()
        return
    pytest.skip("no free pair of loopback ports")


def test_an_sdp_file_naming_a_loopback_port_is_refused_and_nothing_reaches_it(
    library: SoundLibrary, listening: tuple[int, socket.socket, socket.socket]
) -> None:
    port, tcp, udp = listening
    sdp = (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=probe\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()

    async def scenario() -> None:
        async with operated(library) as op:
            status, detail = await put(op, "stream", sdp)
            assert status == 422
            assert "sdp (SDP) is not an accepted audio format" in detail
        with pytest.raises(BlockingIOError):
            tcp.accept()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(2048)

    run(scenario)


def test_huge_pngs_at_once_are_refused_and_the_servers_memory_stays_put(library: SoundLibrary) -> None:
    image = io.BytesIO()
    Image.new("1", (16_000, 16_000)).save(image, "PNG")
    png = image.getvalue()

    async def scenario() -> None:
        async with operated(library) as op:
            before = resident_bytes()
            replies = await asyncio.gather(*(put(op, f"picture{n}", png) for n in range(4)))
            assert resident_bytes() - before < MEMORY_GROWTH_LIMIT
        for status, detail in replies:
            assert status == 422
            assert "png_pipe (piped png sequence) is not an accepted audio format" in detail

    run(scenario)


def test_an_mp4_with_a_video_stream_is_refused_as_video(library: SoundLibrary, tmp_path: Path) -> None:
    path = tmp_path / "film.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=48_000, layout="mono")
        for n in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), n * 20, np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        samples = (tone(440.0, 1.0, 48_000) * 32767).astype(np.int16).reshape(1, -1)
        sound = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        sound.sample_rate, sound.pts = 48_000, 0
        container.mux(audio.encode(sound))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))

    async def scenario() -> None:
        async with operated(library) as op:
            status, detail = await put(op, "film", path.read_bytes())
            assert status == 422
            assert "contains a video stream (mpeg4); only audio files are accepted" in detail

    run(scenario)


def flac_declaring_days(tmp_path: Path) -> bytes:
    """A real one-second FLAC whose STREAMINFO claims 2^36 - 1 samples (18 days at 44.1 kHz)."""
    data = bytearray(write_tone(tmp_path / "short.flac", seconds=1.0, codec="flac").read_bytes())
    info = data.index(b"fLaC") + 8  # after the marker and the block header
    fields = int.from_bytes(data[info + 10 : info + 18], "big") | (2**36 - 1)
    data[info + 10 : info + 18] = fields.to_bytes(8, "big")
    return bytes(data)


@pytest.mark.parametrize(
    "bomb",
    ["WAV at 1 Hz declaring 28 hours", "WAV at 1 Hz of unknown length", "FLAC declaring 18 days"],
)
def test_a_small_file_declaring_hours_of_audio_is_refused(
    library: SoundLibrary, tmp_path: Path, bomb: str
) -> None:
    if bomb.startswith("FLAC"):
        data = flac_declaring_days(tmp_path)
    else:
        declared = 0xFFFFFFFF if "unknown" in bomb else 100_000
        data = wav_header(1, declared) + b"\x90" * 100_000

    async def scenario() -> None:
        async with operated(library) as op:
            before = resident_bytes()
            status, detail = await put(op, "bomb", data)
            assert resident_bytes() - before < MEMORY_GROWTH_LIMIT
            assert status == 422
            assert "longer than the 900 s allowed" in detail or "exceeded the memory limit" in detail

    run(scenario)


def accepted_file(tmp_path: Path, kind: str) -> bytes:
    signal = tone(660.0, 1.0, 44_100)
    if kind == "wav":
        return write_tone(tmp_path / "a.wav", 660.0).read_bytes()
    if kind == "flac":
        return write_tone(tmp_path / "a.flac", 660.0, codec="flac").read_bytes()
    if kind == "mp3":
        return write_audio(tmp_path / "a.mp3", signal, rate=44_100, codec="libmp3lame").read_bytes()
    if kind == "ogg-opus":
        return write_audio(
            tmp_path / "a.opus", tone(660.0, 1.0, 48_000), rate=48_000, codec="libopus"
        ).read_bytes()
    if kind == "ogg-vorbis":
        encoder = vorbis_encoder()
        if encoder is None:
            pytest.skip("the bundled FFmpeg has no Vorbis encoder")
        codec, options = encoder
        return write_audio(
            tmp_path / "a.ogg", signal, rate=44_100, codec=codec, layout="stereo", codec_options=options
        ).read_bytes()
    if kind == "m4a":
        return write_audio(
            tmp_path / "a.m4a", signal, rate=44_100, codec="aac", container_format="ipod"
        ).read_bytes()
    if kind == "aac-adts":
        return write_audio(
            tmp_path / "a.aac", signal, rate=44_100, codec="aac", container_format="adts"
        ).read_bytes()
    if kind == "webm-opus":
        return write_audio(
            tmp_path / "a.webm", tone(660.0, 1.0, 48_000), rate=48_000, codec="libopus"
        ).read_bytes()
    if kind == "aiff":
        return write_audio(tmp_path / "a.aiff", signal, rate=44_100, codec="pcm_s16be").read_bytes()
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["wav", "flac", "mp3", "ogg-opus", "ogg-vorbis", "m4a", "aac-adts", "webm-opus", "aiff"]
)
def test_every_accepted_format_still_uploads(library: SoundLibrary, tmp_path: Path, kind: str) -> None:
    if kind in ("mp3",) and not has_encoder("libmp3lame"):
        pytest.skip("the bundled FFmpeg has no libmp3lame encoder")
    data = accepted_file(tmp_path, kind)

    async def scenario() -> None:
        async with operated(library) as op:
            response = await op.http.put("/api/sounds/tune", content=data, headers=OCTETS)
            assert response.status_code == 201, response.text
            assert response.json()["duration"] == pytest.approx(1.0, abs=0.06)

    run(scenario)


def test_an_upload_finding_every_decoder_busy_is_503_with_retry_after(
    library: SoundLibrary, tmp_path: Path
) -> None:
    long = write_audio(tmp_path / "long.wav", tone(440.0, 300.0, 8_000), rate=8_000, codec="pcm_s16le")
    short = write_tone(tmp_path / "short.wav", seconds=0.5).read_bytes()

    async def scenario() -> None:
        async with operated(library) as op:
            op.plane.sounds.sandbox = DecodeSandbox(SandboxLimits(concurrency=1, queue_seconds=0.1))
            first = asyncio.create_task(put(op, "long", long.read_bytes()))
            async with asyncio.timeout(10):
                while not op.plane.sounds.sandbox.running:
                    await asyncio.sleep(0.01)
            response = await op.http.put("/api/sounds/short", content=short, headers=OCTETS)
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "5"
            assert "being decoded already" in response.json()["detail"]
            assert (await first)[0] == 201

    run(scenario)


def test_a_stop_during_an_upload_kills_its_decoder_and_answers_503(
    library: SoundLibrary, tmp_path: Path
) -> None:
    long = write_audio(tmp_path / "long.wav", tone(440.0, 600.0, 8_000), rate=8_000, codec="pcm_s16le")

    async def scenario() -> None:
        async with operated(library) as op:
            upload = asyncio.create_task(put(op, "long", long.read_bytes()))
            async with asyncio.timeout(10):
                while not op.plane.sounds.sandbox.running:
                    await asyncio.sleep(0.01)
            (pid,) = op.plane.sounds.sandbox.running
            loop = asyncio.get_running_loop()
            started = loop.time()
            await op.plane.stop(grace=1.0)
            assert loop.time() - started < 5.0, "the stop waited for the decoder"
            status, detail = await upload
            assert status == 503
            assert detail == "the server is stopping"
            assert not alive(pid)

    run(scenario)


def test_uploads_beyond_those_in_progress_are_503_before_their_bodies_are_read(
    library: SoundLibrary, tmp_path: Path
) -> None:
    short = write_tone(tmp_path / "short.wav", seconds=0.5).read_bytes()

    async def scenario() -> None:
        async with operated(library) as op:
            held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
            for number in range(MAX_UPLOADS_READING):
                # Every byte of a 1 MB body but the last: each upload holds its place while reading.
                reader, writer = await asyncio.open_connection("127.0.0.1", op.plane.admin_port)
                writer.write(
                    f"PUT /api/sounds/held-{number} HTTP/1.1\r\nHost: localhost\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n".encode()
                    + b"\0" * 999_999
                )
                await writer.drain()
                held.append((reader, writer))
            async with asyncio.timeout(10):
                while True:
                    response = await op.http.put("/api/sounds/one-more", content=short, headers=OCTETS)
                    if response.status_code == 503:
                        break
                    assert response.status_code in (200, 201)  # the held uploads not all reading yet
                    await asyncio.sleep(0.05)
            assert "uploads are already in progress" in response.json()["detail"]
            assert response.headers["Retry-After"]
            for _, writer in held:
                writer.close()
            async with asyncio.timeout(10):
                while (status := await put(op, "after", short))[0] == 503:
                    await asyncio.sleep(0.05)
            assert status[0] == 201

    run(scenario)
