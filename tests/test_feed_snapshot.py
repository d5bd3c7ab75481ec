"""Subscribe, then snapshot: a replica's mirror misses nothing published while it reads what the
fleet holds. A real redis-server; the window between the read and the feed is opened on purpose
by a change made from the test right after the read, before anything else runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from cluster.rejections import Rejections
from cluster.replica_auth import MessageSeal
from cluster.shared_store import SharedStore, device_key
from cluster.sound_share import ASSIGNMENTS, SOUNDS, SoundShare
from media.catalog import SoundCatalog
from media.library import SoundLibrary
from tests.audio_files import write_tone
from tests.live import eventually, run
from tests.redis_server import RedisServer, redis_server

Step = Callable[[], Awaitable[None]]


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def until_stored(redis: RedisServer, read: Callable[[aioredis.Redis], Awaitable[object]]) -> None:
    """Until Redis holds what the test wrote through a replica (its writes are queued)."""
    client = aioredis.Redis.from_url(redis.url)
    try:
        async with asyncio.timeout(5):
            while not await read(client):
                await asyncio.sleep(0.01)
    finally:
        await client.aclose()


class StoreChangedAfterItsRead(SharedStore):
    """A replica whose first mirror load is followed, before it goes on, by ``meanwhile``."""

    def __init__(self, url: str, replica: str, meanwhile: Step) -> None:
        super().__init__(url, replica)
        self._meanwhile: Step | None = meanwhile

    async def _load_mirror(self) -> None:
        await super()._load_mirror()
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            await meanwhile()


def test_a_change_published_while_the_store_loads_its_mirror_is_seen(redis: RedisServer) -> None:
    async def scenario() -> None:
        writer = SharedStore(redis.url, "writer")
        await writer.open()

        async def tag_the_kitchen() -> None:
            writer.save_tags("kitchen", ["lobby"])
            await until_stored(redis, lambda client: client.hget(device_key("kitchen"), "tags"))

        reader = StoreChangedAfterItsRead(redis.url, "reader", tag_the_kitchen)
        await reader.open()
        try:
            await eventually(
                lambda: any(r.device_id == "kitchen" and r.tags == ("lobby",) for r in reader.records())
            )
        finally:
            await reader.aclose()
            await writer.aclose()

    run(scenario, timeout=30)


class SoundsChangedAfterTheirRead(SoundShare):
    """A replica whose first read of the fleet's sounds is followed, before it goes on, by ``meanwhile``."""

    meanwhile: Step | None = None

    async def _take_all(self) -> None:
        await super()._take_all()
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            await meanwhile()


def test_an_assignment_made_while_a_replica_reads_the_fleets_sounds_is_seen(
    redis: RedisServer, library: SoundLibrary
) -> None:
    async def scenario() -> None:
        store = SharedStore(redis.url, "store")
        await store.open()
        writer_catalog, reader_catalog = SoundCatalog(library, None), SoundCatalog(library, None)
        writer = SoundShare(
            store.client, "writer", writer_catalog, seal=MessageSeal("writer", None), rejections=Rejections()
        )
        reader = SoundsChangedAfterTheirRead(
            store.client, "reader", reader_catalog, seal=MessageSeal("reader", None), rejections=Rejections()
        )
        chosen = library.sounds[3].name

        async def assign_mode_one() -> None:
            writer_catalog.assign(1, chosen)
            await until_stored(redis, lambda client: client.hget(ASSIGNMENTS, "1"))

        reader.meanwhile = assign_mode_one
        try:
            await writer.start()
            await reader.start()
            await eventually(lambda: reader_catalog.assignments().get(1) == chosen)
        finally:
            await reader.aclose()
            await writer.aclose()
            writer_catalog.close()
            reader_catalog.close()
            await store.aclose()

    run(scenario, timeout=30)


class FetchOutrunByTheFeed(SoundShare):
    """A replica that, while decoding a sound it fetched at start, first lets ``meanwhile`` run
    and waits until its feed has brought a change to that sound."""

    meanwhile: Step | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.installed = asyncio.Event()

    async def _install(self, name: str, data: bytes, fed: int | None = None) -> None:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            await meanwhile()
            await eventually(lambda: self._fed[name] > 0, timeout=5)
        await super()._install(name, data, fed)
        self.installed.set()


def test_a_sound_fetched_at_start_and_deleted_before_it_is_installed_stays_deleted(
    redis: RedisServer, library: SoundLibrary, tmp_path: Path
) -> None:
    bell = write_tone(tmp_path / "bell.wav", freq=660, seconds=0.5).read_bytes()

    async def scenario() -> None:
        store = SharedStore(redis.url, "store")
        await store.open()
        writer_catalog, reader_catalog = SoundCatalog(library, None), SoundCatalog(library, None)
        writer = SoundShare(
            store.client, "writer", writer_catalog, seal=MessageSeal("writer", None), rejections=Rejections()
        )
        reader = FetchOutrunByTheFeed(
            store.client, "reader", reader_catalog, seal=MessageSeal("reader", None), rejections=Rejections()
        )
        try:
            await writer.start()
            writer_catalog.add("bell", await writer_catalog.decode("bell", bell), bell)
            await until_stored(redis, lambda client: client.hexists(SOUNDS, "bell"))

            async def delete_the_bell() -> None:
                writer_catalog.remove("bell")

            reader.meanwhile = delete_the_bell
            await reader.start()
            async with asyncio.timeout(10):
                await reader.installed.wait()
            assert not reader_catalog.holds("bell")
        finally:
            await reader.aclose()
            await writer.aclose()
            writer_catalog.close()
            reader_catalog.close()
            await store.aclose()

    run(scenario, timeout=30)
