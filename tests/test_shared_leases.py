"""Leases among replicas, against a real redis-server: what belongs to an older lease of a device
(a batch still in flight, a late refusal) never acts on a newer one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest
import redis.asyncio as aioredis

from actors.commit import GroupCommit
from actors.lease import STALE_SAVE, Lease
from actors.state import DeviceState
from actors.store import SaveOutcome
from cluster.shared_store import SharedStore, device_key
from tests.live import eventually, run
from tests.redis_server import RedisServer, redis_server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


class HeldBatches(SharedStore):
    """The real store; a batch goes out only when the test sends it (a batch still in flight)."""

    def __init__(self, url: str, replica: str) -> None:
        super().__init__(url, replica)
        self.held: list[Callable[[], None]] = []

    def submit(
        self,
        states: Sequence[tuple[str, DeviceState]],
        done: Callable[[SaveOutcome], None],
        epochs: Mapping[str, int] | None = None,
    ) -> None:
        self.held.append(lambda: SharedStore.submit(self, states, done, epochs))


class HeldAnswers(SharedStore):
    """The real store; Redis's answer to a batch reaches the group commit when the test passes it on
    (an answer that arrives late)."""

    def __init__(self, url: str, replica: str) -> None:
        super().__init__(url, replica)
        self.answers: list[Callable[[], None]] = []

    def submit(
        self,
        states: Sequence[tuple[str, DeviceState]],
        done: Callable[[SaveOutcome], None],
        epochs: Mapping[str, int] | None = None,
    ) -> None:
        def hold(outcome: SaveOutcome) -> None:
            self.answers.append(lambda: done(outcome))

        SharedStore.submit(self, states, hold, epochs)


async def stored_mode(redis: RedisServer, device_id: str) -> bytes | str | None:
    raw = aioredis.Redis.from_url(redis.url)
    try:
        mode: bytes | str | None = await raw.hget(device_key(device_id), "mode")
        return mode
    finally:
        await raw.aclose()


def test_a_device_claimed_anew_resumes_the_store_not_its_older_leases_batch_in_flight_nor_resends_it(
    redis: RedisServer,
) -> None:
    async def scenario() -> None:
        a, b = HeldBatches(redis.url, "a"), SharedStore(redis.url, "b")
        await a.open()
        await b.open()
        try:
            loop = asyncio.get_running_loop()
            commits = GroupCommit(a, lambda call: loop.call_soon(call), loop.call_later, stale=a.stale)
            a.on_claimed = commits.forget
            await a.claim("kitchen")  # lease 1
            acked: list[bool] = []
            commits.save("kitchen", DeviceState(mode=2), acked.append)
            await eventually(lambda: bool(a.held))  # the batch of lease 1 is on its way
            await b.claim("kitchen")
            done: asyncio.Future[SaveOutcome] = loop.create_future()
            b.submit([("kitchen", DeviceState(mode=4))], done.set_result)
            assert await done == frozenset()
            await eventually(lambda: not a.owns("kitchen"), timeout=5)
            await a.claim("kitchen")  # the device came back: lease 3, which read mode 4
            assert a.lease("kitchen") == Lease("kitchen", 3)
            assert commits.load("kitchen") == DeviceState(mode=4), "not the older lease's batch"
            a.held.pop()()  # the old batch goes out now
            await eventually(lambda: commits.idle and acked == [False], timeout=5)
            assert await stored_mode(redis, "kitchen") == b"4", "never sent under the newer lease"
            assert a.stale.dropped[STALE_SAVE] == 1
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario, timeout=30)


def test_a_late_refusal_of_an_older_lease_names_that_lease_and_the_fresh_claim_stays(
    redis: RedisServer,
) -> None:
    async def scenario() -> None:
        a = HeldAnswers(redis.url, "a")
        await a.open()
        try:
            loop = asyncio.get_running_loop()
            fenced: list[Lease] = []
            lost: list[Lease] = []
            a.on_lease_ended = lost.append
            commits = GroupCommit(
                a,
                lambda call: loop.call_soon(call),
                loop.call_later,
                on_lease_ended=fenced.append,
                stale=a.stale,
            )
            await a.claim("kitchen")  # lease 1
            raw = aioredis.Redis.from_url(redis.url)
            try:  # another replica's claim whose announcement "a" never heard (paused, cut off)
                await raw.hincrby(device_key("kitchen"), "epoch", 1)
                await raw.hset(device_key("kitchen"), mapping={"owner": "b", "mode": 4})
            finally:
                await raw.aclose()
            commits.save("kitchen", DeviceState(mode=2))
            await eventually(lambda: bool(a.answers))  # refused by Redis; the answer comes late
            assert lost == [Lease("kitchen", 1)]
            await a.claim("kitchen")  # the device came back: lease 3
            a.answers.pop()()
            assert fenced == [Lease("kitchen", 1)], "the eviction names the lease that ended"
            assert a.owns("kitchen")
            assert a.lease("kitchen") == Lease("kitchen", 3)
            assert lost == [Lease("kitchen", 1)], "the fresh claim was not taken for lost"
        finally:
            await a.aclose()

    run(scenario, timeout=30)
