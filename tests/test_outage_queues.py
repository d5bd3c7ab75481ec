"""What waits for Redis while it is away: one write per device (or sound, or field), bounded, and
what is dropped counted. A real redis-server, paused (SIGSTOP) as a hung or partitioned one is;
the memory figure itself is ``bench.outage``'s."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bench.outage import UPLOAD_NAMES, churn, close_replica, open_replica
from cluster.redis_io import Coalescing
from cluster.shared_store import SharedStore, device_key
from media.library import SoundLibrary
from tests.live import run, serving
from tests.redis_server import RedisServer, redis_server
from tests.scrape import sample, scrape


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@contextmanager
def paused(redis: RedisServer) -> Iterator[None]:
    assert redis.process is not None
    redis.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        redis.process.send_signal(signal.SIGCONT)


def test_a_newer_write_for_a_key_replaces_the_waiting_one_and_goes_behind_the_others() -> None:
    waiting: Coalescing[str, int] = Coalescing(limit=10)
    waiting.put("sound", 1)
    waiting.put("mode", 2)
    waiting.put("sound", 3)
    assert waiting.take_all() == [2, 3]
    assert waiting.replaced == 1


def test_a_new_key_beyond_the_limit_is_dropped_and_counted_but_a_waiting_key_still_updates() -> None:
    waiting: Coalescing[str, int] = Coalescing(limit=2)
    assert waiting.put("a", 1)
    assert waiting.put("b", 1)
    assert not waiting.put("c", 1)
    assert waiting.put("a", 2)
    assert waiting.dropped == 1
    assert waiting.take_all() == [1, 2]


def test_a_redis_outage_keeps_one_waiting_write_per_device_sound_and_field(
    redis: RedisServer, library: SoundLibrary
) -> None:
    devices, ticks = 200, 60

    async def scenario() -> None:
        replica = await open_replica(redis.url, library)
        try:
            churned = await churn(replica, devices, 2)
            with paused(redis):
                await churn(replica, devices, ticks, churned)
            assert churned.longest["fleet-snapshots"] <= devices
            assert churned.longest["operator-writes"] <= devices
            assert churned.longest["sound-changes"] <= UPLOAD_NAMES
            assert churned.longest["audit"] <= ticks + 2  # each its own, under its bound
            async with asyncio.timeout(30):
                while any(replica.waiting().values()):
                    await asyncio.sleep(0.05)
            client = aioredis.Redis.from_url(redis.url)
            try:  # the latest tags, not an older queued one, are what Redis holds
                tags = await client.hget(device_key("device-00002"), "tags")
            finally:
                await client.aclose()
            last_retagged = max(t for t in range(1, churned.ticks + 1) if t % 10 == 2)
            assert tags == f'["tag-{last_retagged}"]'.encode()
        finally:
            await close_replica(replica)

    run(scenario, timeout=120)


def test_a_desired_mode_set_then_cleared_during_an_outage_is_cleared_once_redis_is_back(
    redis: RedisServer,
) -> None:
    async def scenario() -> None:
        store = SharedStore(redis.url, "operator")
        await store.open()
        try:
            await store.claim("kitchen")
            with paused(redis):
                store.set_desired("kitchen", 3)
                store.set_desired("kitchen", 4)
                store.clear_desired("kitchen", 4)
                assert store.waiting_fields == 1
            async with asyncio.timeout(30):
                while store.waiting_fields:
                    await asyncio.sleep(0.05)
            client = aioredis.Redis.from_url(redis.url)
            try:
                assert await client.hget(device_key("kitchen"), "desired") is None
            finally:
                await client.aclose()
        finally:
            await store.aclose()

    run(scenario, timeout=60)


def test_what_waits_for_redis_and_what_was_dropped_are_metrics_by_queue(
    redis: RedisServer, library: SoundLibrary, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with serving(
            library, store=redis.url, replica_id="one", state_db=str(tmp_path / "state.sqlite3")
        ) as plane:
            metrics = scrape(plane.metrics_port or 0)
            for queue in ("fleet-snapshots", "sound-changes", "audit", "operator-writes"):
                assert sample(metrics, "acp_store_writes_waiting", queue=queue) == 0
                assert sample(metrics, "acp_store_writes_dropped_total", queue=queue) == 0

    run(scenario)
