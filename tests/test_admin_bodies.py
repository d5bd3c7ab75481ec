"""Request bodies are bounded before they are read: 413 from the guard, and the rest never read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from media.library import SoundLibrary
from tests.admin_live import JSON, Operated, operated
from tests.audio_files import write_tone
from tests.live import run
from tests.server_process import ServerProcess

LIMIT_MB = 0.01
"""The JSON limit these tests set: 10 kB, so going over it is quick."""
LIMIT = int(LIMIT_MB * 1_000_000)


async def raw(op: Operated) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert op.plane.admin_port is not None
    return await asyncio.open_connection("127.0.0.1", op.plane.admin_port)


async def reply_of(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Status line, headers (lower-case names) and the body, up to the server's close."""
    async with asyncio.timeout(5):
        status = await reader.readline()
        headers: dict[bytes, bytes] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers, body


async def server_closes(reader: asyncio.StreamReader) -> None:
    async with asyncio.timeout(5):
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:
            pass


def test_a_json_body_over_the_limit_by_its_content_length_is_413_before_a_byte_is_sent(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            reader, writer = await raw(op)
            writer.write(
                b"POST /api/announce HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: 300000000\r\n\r\n"
            )
            status, headers, body = await reply_of(reader)
            assert status.startswith(b"HTTP/1.1 413"), status
            assert b"1,000,000 bytes" in body
            assert headers[b"connection"] == b"close"
            await server_closes(reader)
            writer.close()

    run(scenario)


def test_a_client_still_sending_a_refused_body_reads_the_413(tmp_path: Path) -> None:
    """Against the server as a process of its own: in one process the client's writes and the
    server's reads take turns on one loop, and the race a reset connection loses never happens.
    Several attempts, by length and chunked: a reset loses the race only some of the time."""
    server = ServerProcess(tmp_path / "server.log", "--admin-port", "0")

    async def refused(framing: bytes, chunk: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.admin_port)
        writer.write(
            b"POST /api/announce HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n%s\r\n\r\n"
            % framing
        )

        async def keep_sending() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(300):
                    writer.write(chunk)
                    await writer.drain()

        sending = asyncio.create_task(keep_sending())
        try:
            status, _, body = await reply_of(reader)  # not a reset connection
        finally:
            sending.cancel()
            writer.transport.abort()  # what was not sent is dropped: a close would wait to send it
        assert status.startswith(b"HTTP/1.1 413"), status
        assert b"larger than the limit" in body

    async def scenario() -> None:
        megabyte = b" " * 1_000_000
        for _ in range(3):
            await refused(b"Content-Length: 300000000", megabyte)
            await refused(b"Transfer-Encoding: chunked", b"%x\r\n%s\r\n" % (len(megabyte), megabyte))

    try:
        run(scenario)
    finally:
        server.kill()


def test_a_chunked_json_body_over_the_limit_is_413_once_the_limit_is_read(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_max_json_mb=LIMIT_MB) as op:
            reader, writer = await raw(op)
            writer.write(
                b"POST /api/announce HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            sent = 0

            async def stream_whitespace() -> None:
                nonlocal sent
                chunk = b"%x\r\n%s\r\n" % (1000, b" " * 1000)
                while True:  # endless: only the server's answer ends it
                    writer.write(chunk)
                    sent += 1000
                    await writer.drain()
                    await asyncio.sleep(0.001)

            streaming = asyncio.create_task(stream_whitespace())
            try:
                status, headers, body = await reply_of(reader)
            finally:
                streaming.cancel()
            assert status.startswith(b"HTTP/1.1 413"), status
            assert f"{LIMIT:,} bytes".encode() in body
            assert headers[b"connection"] == b"close"
            await server_closes(reader)
            writer.close()

    run(scenario)


def test_a_chunked_json_body_within_the_limit_is_read_whole(library: SoundLibrary) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"sound": "builtin-0", ', b'"target": {"all": true}}'):
            yield part

    async def scenario() -> None:
        async with operated(library, admin_max_json_mb=LIMIT_MB) as op:
            response = await op.http.post("/api/announce", content=chunks(), headers=JSON)
            assert response.status_code == 200, response.text
            assert response.json()["sound"] == "builtin-0"

    run(scenario)


def test_an_upload_keeps_its_own_larger_limit(library: SoundLibrary, tmp_path: Path) -> None:
    wav = write_tone(tmp_path / "bell.wav", freq=660, seconds=1.0).read_bytes()
    assert len(wav) > LIMIT

    async def scenario() -> None:
        async with operated(library, admin_max_json_mb=LIMIT_MB) as op:
            response = await op.http.put(
                "/api/sounds/bell", content=wav, headers={"Content-Type": "audio/wav"}
            )
            assert response.status_code == 201, response.text

    run(scenario)


def test_an_answer_before_the_body_was_read_closes_the_connection(
    library: SoundLibrary, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with operated(library, admin_max_upload_mb=0.001) as op:
            reader, writer = await raw(op)
            writer.write(
                b"PUT /api/sounds/big HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/wav\r\n"
                b"Content-Length: 100000\r\n\r\n"
            )
            status, headers, _ = await reply_of(reader)
            assert status.startswith(b"HTTP/1.1 413"), status
            assert headers[b"connection"] == b"close", "the rest of the body is not read"
            await server_closes(reader)
            writer.close()

    run(scenario)


def test_an_upload_that_stops_arriving_is_closed_and_logs_no_error(
    library: SoundLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with operated(library, admin_header_timeout=0.5) as op:
            reader, writer = await raw(op)
            writer.write(
                b"PUT /api/sounds/stalled HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/wav\r\n"
                b"Content-Length: 1000\r\n\r\nRIFF"
            )
            await server_closes(reader)
            writer.close()

    with caplog.at_level(logging.WARNING):
        run(scenario)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


def test_a_body_sent_outside_the_api_is_answered_without_waiting_for_it(library: SoundLibrary) -> None:
    """No page outside /api/ takes a body, and none asks for a token: a client trickling one there,
    a byte at a time, would hold its connection for as long as it likes."""

    async def scenario() -> None:
        async with operated(library, admin_header_timeout=60) as op:
            reader, writer = await raw(op)
            writer.write(
                b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000\r\n\r\n{"
            )
            status, headers, _ = await reply_of(reader)
            assert status.startswith(b"HTTP/1.1 4"), status
            assert headers.get(b"connection") == b"close"
            writer.close()

    run(scenario)
