"""The shared store against a real redis-server: ownership, fencing, the mirror, outages."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from actors.commit import GroupCommit
from actors.lease import Lease
from actors.state import DeviceState
from actors.store import SaveOutcome, StoreUnavailable
from cluster.shared_store import CHANGES, SharedStore, device_key
from tests.live import eventually, run
from tests.redis_server import RedisServer, redis_server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def with_replicas(redis: RedisServer, *names: str) -> Callable[[Callable[..., Awaitable[None]]], None]:
    """Run the scenario with one open SharedStore per name, closed afterwards."""

    def decorate(scenario: Callable[..., Awaitable[None]]) -> None:
        async def opened() -> None:
            stores = [SharedStore(redis.url, name) for name in names]
            for store in stores:
                await store.open()
            try:
                await scenario(*stores)
            finally:
                for store in stores:
                    await store.aclose()

        run(opened, timeout=30)

    return decorate


async def submitted(store: SharedStore, *states: tuple[str, DeviceState]) -> SaveOutcome:
    future: asyncio.Future[SaveOutcome] = asyncio.get_running_loop().create_future()
    store.submit(list(states), future.set_result)
    return await future


def test_the_state_one_replica_saved_is_what_the_next_owner_resumes(redis: RedisServer) -> None:
    @with_replicas(redis, "a", "b")
    async def _(a: SharedStore, b: SharedStore) -> None:
        await a.claim("kitchen")
        assert await submitted(a, ("kitchen", DeviceState(mode=3, next_playback_id=7))) == frozenset()
        await b.claim("kitchen")
        assert b.load("kitchen") == DeviceState(mode=3, next_playback_id=7)


def test_a_device_claimed_elsewhere_is_reported_lost_by_its_old_owner_within_a_second(
    redis: RedisServer,
) -> None:
    @with_replicas(redis, "a", "b")
    async def _(a: SharedStore, b: SharedStore) -> None:
        lost: list[Lease] = []
        a.on_lease_ended = lost.append
        await a.claim("kitchen")
        await b.claim("kitchen")
        await eventually(lambda: lost == [Lease("kitchen", 1)], timeout=1.0)
        assert not a.owns("kitchen")
        assert b.owns("kitchen")


def test_a_replica_that_missed_the_takeover_cannot_overwrite_the_new_owners_state(
    redis: RedisServer,
) -> None:
    @with_replicas(redis, "a")
    async def _(a: SharedStore) -> None:
        lost: list[Lease] = []
        a.on_lease_ended = lost.append
        await a.claim("kitchen")
        assert await submitted(a, ("kitchen", DeviceState(mode=1))) == frozenset()
        raw = aioredis.Redis.from_url(redis.url)
        try:  # another replica's claim and save whose announcement "a" never heard (paused, cut off)
            await raw.hincrby(device_key("kitchen"), "epoch", 1)
            await raw.hset(device_key("kitchen"), mapping={"owner": "b", "mode": 4})
            assert await submitted(a, ("kitchen", DeviceState(mode=2))) == frozenset({"kitchen"})
            assert await raw.hget(device_key("kitchen"), "mode") == b"4"
        finally:
            await raw.aclose()
        assert lost == [Lease("kitchen", 1)], "the refused save tells the replica it lost the device"
        assert not a.owns("kitchen")


def test_a_save_of_a_device_the_replica_does_not_own_is_refused_without_asking(redis: RedisServer) -> None:
    @with_replicas(redis, "a")
    async def _(a: SharedStore) -> None:
        assert await submitted(a, ("hall", DeviceState(mode=2))) == frozenset({"hall"})
        assert a.load("hall") is None


def test_every_replica_knows_the_devices_tags_and_desired_modes_the_others_write(redis: RedisServer) -> None:
    @with_replicas(redis, "a", "b")
    async def _(a: SharedStore, b: SharedStore) -> None:
        await a.claim("kitchen")
        await submitted(a, ("kitchen", DeviceState(mode=2)))
        a.save_tags("kitchen", ["upstairs", "loud"])
        a.set_desired("kitchen", 4)

        def seen() -> bool:
            records = {record.device_id: record for record in b.records()}
            record = records.get("kitchen")
            return record is not None and (record.tags, record.desired_mode) == (("upstairs", "loud"), 4)

        await eventually(seen)
        a.clear_desired("kitchen", 3)  # not the desired mode any more: left alone
        a.clear_desired("kitchen", 4)
        await eventually(lambda: b.load_desired("kitchen") is None)


def test_a_replica_started_later_loads_the_whole_fleet(redis: RedisServer) -> None:
    @with_replicas(redis, "a")
    async def _(a: SharedStore) -> None:
        for n in range(30):
            await a.claim(f"device-{n}")
        await submitted(a, *((f"device-{n}", DeviceState(mode=n % 5)) for n in range(30)))
        later = SharedStore(redis.url, "later")
        await later.open()
        try:
            assert {record.device_id: record.mode for record in later.records()} == {
                f"device-{n}": n % 5 for n in range(30)
            }
        finally:
            await later.aclose()


def test_no_device_can_be_claimed_while_the_store_is_unreachable(redis: RedisServer) -> None:
    @with_replicas(redis, "a")
    async def _(a: SharedStore) -> None:
        redis.stop()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await a.claim("kitchen")
        assert not a.reachable
        assert a.outages == 1


def test_saves_made_during_an_outage_are_not_acked_and_reach_the_store_once_it_is_back(
    redis: RedisServer,
) -> None:
    @with_replicas(redis, "a")
    async def _(a: SharedStore) -> None:
        loop = asyncio.get_running_loop()
        commits = GroupCommit(a, lambda call: loop.call_soon(call), loop.call_later, retry_delay=0.1)
        await a.claim("kitchen")
        acked: list[bool] = []
        commits.save("kitchen", DeviceState(mode=1), acked.append)
        await eventually(lambda: acked == [True])
        redis.stop(signal.SIGKILL)  # appendfsync always: what was acked is on disk
        commits.save("kitchen", DeviceState(mode=3), acked.append)
        await eventually(lambda: acked == [True, False], timeout=5)
        assert commits.load("kitchen") == DeviceState(mode=3), "kept for the retry"
        redis.start()
        await eventually(lambda: commits.idle, timeout=10)
        assert a.reachable
        assert a.outages == 1
        raw = aioredis.Redis.from_url(redis.url)
        try:
            assert await raw.hget(device_key("kitchen"), "mode") == b"3"
        finally:
            await raw.aclose()


def test_a_malformed_message_on_the_change_feed_is_skipped_and_the_feed_goes_on(redis: RedisServer) -> None:
    @with_replicas(redis, "a", "b")
    async def _(a: SharedStore, b: SharedStore) -> None:
        lost: list[Lease] = []
        a.on_lease_ended = lost.append
        await a.claim("kitchen")
        raw = aioredis.Redis.from_url(redis.url)
        try:
            for garbage in ("no sender line", "c\n{not json", 'c\n{"claim": "kitchen"}'):
                await raw.publish(CHANGES, garbage)
        finally:
            await raw.aclose()
        await b.claim("kitchen")
        await eventually(lambda: lost == [Lease("kitchen", 1)], timeout=1.0)
