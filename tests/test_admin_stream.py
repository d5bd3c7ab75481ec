"""Live events over HTTP: what an open dashboard hears as devices change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from media.library import SoundLibrary
from simulator import Button
from tests.admin_live import Event, Operated, about, events, first, operated
from tests.live import run


async def since_now(op: Operated) -> AsyncIterator[Event]:
    """A reader that misses nothing from this moment on, however late its GET is answered: it
    resumes from the event id the listing reflects, as the dashboard does."""
    listing = (await op.http.get("/api/devices")).json()
    return events(op.http, {"Last-Event-ID": str(listing["event_id"])})


async def until_readers(op: Operated, count: int) -> None:
    assert op.plane.events is not None
    async with asyncio.timeout(5):
        while op.plane.events.readers != count:
            await asyncio.sleep(0.01)


def test_a_reader_hears_a_device_connect_change_mode_and_disconnect(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            stream = await since_now(op)
            kitchen = op.device("kitchen")
            await kitchen.connect()
            await first(stream, about("kitchen", lambda d: d["connected"]))
            await kitchen.press(Button.MODE)
            _, _, changed = await first(stream, about("kitchen", lambda d: d["mode"] == 1))
            assert changed["connected"] is True
            await kitchen.disconnect()
            await first(stream, about("kitchen", lambda d: not d["connected"] and d["status"] == "offline"))

    run(scenario)


def test_a_reader_hears_playback_start_and_end(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            stream = await since_now(op)
            await kitchen.press(Button.PLAY)
            _, _, playing = await first(stream, about("kitchen", lambda d: d["playing"] is not None))
            assert playing["playing"]["sound"] == "builtin-0"
            assert playing["status"] == "playing"
            await first(stream, about("kitchen", lambda d: d["playing"] is None), timeout=10)

    run(scenario)


def test_last_event_id_resumes_after_the_event_named(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            stream = await since_now(op)
            await kitchen.press(Button.MODE)
            seen, _, _ = await first(stream, about("kitchen", lambda d: d["mode"] == 1))
            await stream.aclose()  # type: ignore[attr-defined]
            await kitchen.press(Button.MODE)  # while no reader is connected
            await op.until_device("kitchen", lambda d: d["mode"] == 2)
            resumed = events(op.http, {"Last-Event-ID": str(seen)})
            event_id, _, missed = await first(resumed, about("kitchen", lambda d: True))
            assert event_id > seen
            assert missed["mode"] == 2

    run(scenario)


def test_an_announcement_and_a_sound_change_are_events(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await op.until_device("kitchen", lambda d: d["connected"])  # the view has heard of it
            stream = await since_now(op)
            await op.post("/api/announce", {"sound": "builtin-1", "target": {"all": True}})
            _, _, announced = await first(stream, lambda e: e[1] == "announcement")
            assert announced["sound"] == "builtin-1"
            assert announced["counts"]["started"] == 1, announced["counts"]
            await op.http.put("/api/modes/0", json={"sound": "builtin-2"})
            _, _, sounds = await first(stream, lambda e: e[1] == "sounds")
            assert {"mode": 0, "sound": "builtin-2"} in sounds["modes"]

    run(scenario)


def test_a_malformed_last_event_id_is_422(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            response = await op.http.get("/api/events", headers={"Last-Event-ID": "soon"})
            assert response.status_code == 422

    run(scenario)


def test_a_last_event_id_of_other_digits_or_too_many_is_422(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            for value in ("²".encode("latin-1"), b"9" * 5000, b"9" * 20, "١٢".encode()):
                response = await op.http.get("/api/events", headers={b"Last-Event-ID": value})
                assert response.status_code == 422, value[:20]
                assert "is not an event id" in response.json()["detail"]

    run(scenario)


def test_stopping_the_server_ends_the_stream_of_a_connected_reader(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            reader = asyncio.ensure_future(first(events(op.http), lambda e: False, timeout=30))
            await until_readers(op, 1)
            await op.plane.stop(grace=1.0)
            with pytest.raises(AssertionError, match="the stream ended"):
                await reader

    run(scenario)


def test_a_reader_idle_longer_than_the_unread_limit_still_gets_the_next_event(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, events_max_unread=0.2) as op, op.device("kitchen") as kitchen:
            stream = await since_now(op)
            await first(stream, about("kitchen", lambda d: d["connected"]))
            await asyncio.sleep(0.6)  # quiet: nothing to read, for three times the limit
            await kitchen.press(Button.MODE)
            await first(stream, about("kitchen", lambda d: d["mode"] == 1))
            assert op.plane.events is not None
            assert op.plane.events.dropped == 0

    run(scenario)


def test_a_quiet_stream_gets_comment_keep_alives(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with (
            operated(library, events_keepalive=0.05) as op,
            op.http.stream("GET", "/api/events") as response,
        ):
            async with asyncio.timeout(5):
                lines = response.aiter_lines()
                assert await anext(lines) == ": keep-alive"

    run(scenario)
