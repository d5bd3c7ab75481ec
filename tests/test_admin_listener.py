"""The operator API's listener: idle and half-sent connections are closed, and connections are capped.

Raw sockets against the real server in-process, as an attacker (or a stuck client) would hold them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from media.library import SoundLibrary
from rpc.descriptors import DescriptorLimit, plan_budget
from tests.admin_live import Operated, about, events, first, operated
from tests.live import eventually, run

TIMEOUT = 0.5
"""The header timeout these tests set: small, so waiting it out is quick."""

REQUEST = b"GET /api/whoami HTTP/1.1\r\nHost: localhost\r\n\r\n"


@asynccontextmanager
async def connection(op: Operated) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    assert op.plane.admin_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", op.plane.admin_port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Reads until the server closes the connection; how long that took (AssertionError if it did not)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {seconds} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def reply_status(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.readline()


def test_a_connection_that_sends_no_request_is_closed_within_the_header_timeout(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with operated(library, admin_header_timeout=TIMEOUT) as op, connection(op) as (reader, _):
            await closed_within(reader, 3 * TIMEOUT)

    run(scenario)


def test_a_connection_that_stops_halfway_through_its_headers_is_closed(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_header_timeout=TIMEOUT) as op, connection(op) as (reader, writer):
            writer.write(b"GET /api/devices HTTP/1.1\r\nHost: localhost\r\n")
            await closed_within(reader, 3 * TIMEOUT)

    run(scenario)


def test_headers_sent_a_byte_at_a_time_get_no_more_time_than_the_timeout(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_header_timeout=TIMEOUT) as op, connection(op) as (reader, writer):
            started = time.monotonic()

            async def trickle() -> None:
                for byte in b"GET /api/devices HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 1000:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(TIMEOUT / 10)

            dripping = asyncio.create_task(trickle())
            try:
                await closed_within(reader, 3 * TIMEOUT)
            finally:
                dripping.cancel()
            assert time.monotonic() - started < 3 * TIMEOUT

    run(scenario)


def test_a_body_that_stops_arriving_is_closed(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_header_timeout=TIMEOUT) as op, connection(op) as (reader, writer):
            writer.write(
                b"POST /api/devices/a/stop HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            await closed_within(reader, 3 * TIMEOUT)

    run(scenario)


def test_a_body_that_keeps_arriving_is_read_however_long_it_takes(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_header_timeout=TIMEOUT) as op, connection(op) as (reader, writer):
            body = b'{"mode": 1}'
            writer.write(
                b"POST /api/devices/a/mode HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            for byte in body:  # 11 pauses of half the timeout: longer in all than the timeout
                await asyncio.sleep(TIMEOUT / 2)
                writer.write(bytes([byte]))
            assert (await reply_status(reader)).startswith(b"HTTP/1.1 404"), "read to its end and answered"

    run(scenario)


def test_a_kept_alive_connection_that_stops_halfway_through_its_next_request_is_closed(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with operated(library, admin_header_timeout=TIMEOUT) as op, connection(op) as (reader, writer):
            writer.write(REQUEST)
            assert (await reply_status(reader)).startswith(b"HTTP/1.1 200")
            writer.write(b"GET /api/devices HTTP/1.1\r\nHo")
            await closed_within(reader, 3 * TIMEOUT)

    run(scenario)


def test_a_live_event_stream_outlasts_the_header_timeout(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_header_timeout=TIMEOUT) as op:
            stream = events(op.http)
            reading = asyncio.create_task(
                first(stream, about("kitchen", lambda d: d["connected"]), timeout=10)
            )
            await eventually(lambda: op.plane.events is not None and op.plane.events.readers == 1, 5)
            await asyncio.sleep(4 * TIMEOUT)
            async with op.device("kitchen"):
                await reading

    run(scenario)


def test_a_client_address_beyond_its_share_of_connections_is_closed_at_once(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_max_connections_per_client=3) as op:
            held = [await asyncio.open_connection("127.0.0.1", op.plane.admin_port) for _ in range(3)]
            async with connection(op) as (reader, writer):
                writer.write(REQUEST)
                await closed_within(reader, 5)
            for _, writer in held[1:]:  # still open and served
                writer.write(REQUEST)
            for reader, _ in held[1:]:
                assert (await reply_status(reader)).startswith(b"HTTP/1.1 200")
            held[0][1].close()

            async def served() -> bool:
                async with connection(op) as (reader, writer):
                    writer.write(REQUEST)
                    try:
                        return (await reply_status(reader)).startswith(b"HTTP/1.1 200")
                    except (ConnectionResetError, TimeoutError):
                        return False

            async with asyncio.timeout(5):
                while not await served():  # once the server has seen the close
                    await asyncio.sleep(0.05)
            for _, writer in held[1:]:
                writer.close()

    run(scenario)


def test_beyond_the_connection_cap_a_new_connection_waits_until_one_closes(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_max_connections=3) as op:
            streams = []  # busy connections: each reads the live events, so none yields its place
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", op.plane.admin_port)
                writer.write(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert (await reply_status(reader)).startswith(b"HTTP/1.1 200")
                streams.append(writer)
            async with connection(op) as (reader, writer):
                writer.write(REQUEST)
                waiting = asyncio.create_task(reply_status(reader, timeout=10))
                await asyncio.sleep(0.5)
                assert not waiting.done(), "served beyond the cap"
                streams[0].close()
                assert (await waiting).startswith(b"HTTP/1.1 200")
            for writer in streams[1:]:
                writer.close()

    run(scenario)


def test_at_the_cap_a_connection_that_sent_no_request_yields_its_place(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_max_connections=3, admin_header_timeout=30) as op:
            idle = [await asyncio.open_connection("127.0.0.1", op.plane.admin_port) for _ in range(3)]
            async with connection(op) as (reader, writer):
                writer.write(REQUEST)
                assert (await reply_status(reader, timeout=10)).startswith(b"HTTP/1.1 200"), (
                    "served long before the 30 s header timeout"
                )
            for reader, writer in idle:  # the ones that had waited longer than the grace, all three
                await closed_within(reader, 5)
                writer.close()

    run(scenario)


def test_the_operator_api_gets_at_most_a_share_of_the_descriptors_left() -> None:
    small = plan_budget(DescriptorLimit(160, 160), open_now=20, admin_wanted=256, admin_per_client_wanted=32)
    assert small.admin_connections == (160 - 20 - small.reserved) // 4
    assert small.admin_per_client == min(32, small.admin_connections)
    assert small.devices == 160 - 20 - small.reserved - small.admin_connections
    large = plan_budget(
        DescriptorLimit(1 << 20, 1024), open_now=20, admin_wanted=256, admin_per_client_wanted=32
    )
    assert (large.admin_connections, large.admin_per_client) == (256, 32)
    assert "raised from 1024" in large.describe()
    off = plan_budget(DescriptorLimit(160, 160), open_now=20, admin_wanted=0, admin_per_client_wanted=32)
    assert off.admin_connections == 0
    assert off.devices == 160 - 20 - off.reserved


def test_a_request_whose_headers_are_too_large_is_refused_with_431_before_they_are_all_read(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, connection(op) as (reader, writer):
            writer.write(b"GET /api/whoami HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
            try:  # far more than the limit: the server stops reading long before the end
                for _ in range(64):
                    writer.write(b"a" * 65536)
                    await writer.drain()
            except ConnectionError:
                pass
            assert (await reply_status(reader)).startswith(b"HTTP/1.1 431")
            await closed_within(reader, 5)
        async with operated(library) as op, connection(op) as (reader, writer):
            writer.write(REQUEST)
            assert (await reply_status(reader)).startswith(b"HTTP/1.1 200")

    run(scenario)


def test_a_request_with_thousands_of_headers_is_refused_with_431(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, connection(op) as (reader, writer):
            headers = b"".join(b"X-H%d: a\r\n" % i for i in range(10_000))
            writer.write(b"GET /api/whoami HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n")
            assert (await reply_status(reader)).startswith(b"HTTP/1.1 431")
            writer.write(REQUEST)  # and the connection is not kept for another request
            await closed_within(reader, 5)

    run(scenario)


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One whole reply (status line, headers, a Content-Length body); its status line."""
    async with asyncio.timeout(10):
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
    return status


def test_headers_within_the_limit_and_a_large_body_are_served(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, connection(op) as (reader, writer):
            body = b'{"mode": 1, "pad": "' + b"a" * 500_000 + b'"}'
            writer.write(
                b"POST /api/devices/nobody/mode HTTP/1.1\r\nHost: localhost\r\nX-Fill: "
                + b"b" * 8000
                + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            status = await read_reply(reader)
            assert status.startswith(b"HTTP/1.1 422"), status  # read in full and judged by the app
            writer.write(REQUEST * 2000)  # pipelined, in one write: each its own request, not one's headers
            for served in range(2000):
                status = await read_reply(reader)
                assert status.startswith(b"HTTP/1.1 200"), f"request {served}: {status!r}"

    run(scenario)
