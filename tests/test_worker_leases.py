"""Device leases among workers sharing one SQLite file, and the supervisor's rule for evictions.

Two ``LeasedSqliteStore`` objects on one real file stand for two worker processes (each is
what one worker opens); the supervisor runs on its own actor runtime with one of them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from actors.commit import GroupCommit
from actors.lease import STALE_EVICTION, STALE_SAVE, Lease
from actors.messages import LeaseEnded
from actors.ports import CloseCause
from actors.state import Button, DeviceState
from cluster.worker_leases import LeasedSqliteStore
from media.library import SoundLibrary
from rpc.metrics import Metrics
from tests.actor_fleet import ActorFleet
from tests.scrape import sample


class Scheduled:
    """Stands in for the runtime's call_soon: the test decides when the loop gets round to it."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.calls.append(callback)

    def run(self) -> None:
        calls, self.calls = self.calls, []
        for call in calls:
            call()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[LeasedSqliteStore, LeasedSqliteStore]]:
    path = tmp_path / "state.db"
    first, second = LeasedSqliteStore(path, "worker0"), LeasedSqliteStore(path, "worker1")
    yield first, second
    first.close()
    second.close()


def stored_mode(store: LeasedSqliteStore, device_id: str) -> int | None:
    """Read by a connection of its own, as a third process would."""
    with sqlite3.connect(store.path) as db:
        row = db.execute("SELECT mode FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None else int(row[0])


def test_a_claim_raises_the_devices_epoch_and_names_the_claiming_worker(
    workers: tuple[LeasedSqliteStore, LeasedSqliteStore],
) -> None:
    a, b = workers
    asyncio.run(a.claim("kitchen"))
    assert a.lease("kitchen") == Lease("kitchen", 1)
    assert a.owns("kitchen")
    asyncio.run(b.claim("kitchen"))
    assert b.lease("kitchen") == Lease("kitchen", 2)


def test_a_stale_workers_save_is_refused_and_the_newer_workers_acked_state_is_kept(
    workers: tuple[LeasedSqliteStore, LeasedSqliteStore],
) -> None:
    """The frozen-device case: the old worker's final save comes after the new worker's presses."""
    a, b = workers
    scheduled_a, scheduled_b = Scheduled(), Scheduled()
    fenced: list[Lease] = []
    commits_a = GroupCommit(a, scheduled_a, on_lease_ended=fenced.append)
    commits_b = GroupCommit(b, scheduled_b)
    asyncio.run(a.claim("kitchen"))
    old_session = commits_a.lease("kitchen")
    commits_a.save("kitchen", DeviceState(mode=1), lease=old_session)
    scheduled_a.run()
    asyncio.run(b.claim("kitchen"))
    acked: list[bool] = []
    commits_b.save("kitchen", DeviceState(mode=3), acked.append, lease=commits_b.lease("kitchen"))
    scheduled_b.run()
    assert acked == [True]
    heard: list[bool] = []
    commits_a.save("kitchen", DeviceState(mode=1), heard.append, lease=old_session)  # its retire
    scheduled_a.run()
    assert heard == [False]
    assert fenced == [Lease("kitchen", 1)], "the session of that lease is evicted, with its lease"
    assert stored_mode(a, "kitchen") == 3
    assert commits_a.lease_ended_saves == 1


def test_a_worker_that_finds_another_workers_claim_ends_its_own_lease(
    workers: tuple[LeasedSqliteStore, LeasedSqliteStore],
) -> None:
    a, b = workers
    lost: list[Lease] = []
    a.on_lease_ended = lost.append
    asyncio.run(a.claim("kitchen"))
    asyncio.run(b.claim("kitchen"))
    assert not a.owns("kitchen"), "read from the file, not remembered"
    assert lost == [Lease("kitchen", 1)]
    assert a.lease("kitchen") is None


def test_a_save_made_under_an_older_lease_is_dropped_not_stamped_with_the_newer_one(
    workers: tuple[LeasedSqliteStore, LeasedSqliteStore],
) -> None:
    a, b = workers
    scheduled = Scheduled()
    commits = GroupCommit(a, scheduled)
    a.on_claimed = commits.forget
    asyncio.run(a.claim("kitchen"))
    old_session = commits.lease("kitchen")
    asyncio.run(b.claim("kitchen"))
    b.save_leased([("kitchen", DeviceState(mode=3))], {"kitchen": 2})
    assert not a.owns("kitchen")
    asyncio.run(a.claim("kitchen"))  # the device came back to this worker
    heard: list[bool] = []
    commits.save("kitchen", DeviceState(mode=1), heard.append, lease=old_session)
    assert heard == [False]
    assert commits.stale.dropped[STALE_SAVE] == 1
    assert commits.load("kitchen") == DeviceState(mode=3), "the new session resumes the store's state"
    scheduled.run()
    assert stored_mode(a, "kitchen") == 3


@pytest.fixture
def leased_fleet(
    library: SoundLibrary, workers: tuple[LeasedSqliteStore, LeasedSqliteStore]
) -> Iterator[ActorFleet]:
    fleet = ActorFleet(library, store=workers[0])
    yield fleet
    fleet.shutdown()


def test_an_eviction_of_an_older_lease_leaves_the_newer_session_streaming(
    leased_fleet: ActorFleet, workers: tuple[LeasedSqliteStore, LeasedSqliteStore]
) -> None:
    """A late refusal of an old batch names its old lease: the device's fresh claim stays."""
    a, _ = workers
    asyncio.run(a.claim("kitchen"))
    asyncio.run(a.claim("kitchen"))  # claimed anew: lease 2
    link = leased_fleet.connect("kitchen")
    leased_fleet.supervisor.tell(LeaseEnded(Lease("kitchen", 1)))
    assert leased_fleet.press("kitchen", Button.MODE), "still served after the stale eviction"
    assert not link.closed.items
    assert leased_fleet.commits.stale.dropped[STALE_EVICTION] == 1
    leased_fleet.supervisor.tell(LeaseEnded(Lease("kitchen", 2)))
    link.closed.wait_for(lambda closed: bool(closed))
    assert link.closed.items[0][0] is CloseCause.LEASE_ENDED


def test_what_an_older_lease_left_behind_is_counted_in_a_metric_by_kind(
    workers: tuple[LeasedSqliteStore, LeasedSqliteStore],
) -> None:
    a, _ = workers
    commits = GroupCommit(a, Scheduled())
    asyncio.run(a.claim("kitchen"))
    old_session = commits.lease("kitchen")
    asyncio.run(a.claim("kitchen"))
    commits.save("kitchen", DeviceState(mode=1), lease=old_session)
    metrics = Metrics()
    metrics.watch_commits(commits)
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "acp_stale_lease_dropped_total", kind="save") == 1
    assert sample(text, "acp_stale_lease_dropped_total", kind="eviction") == 0


def test_a_save_made_while_the_worker_holds_no_lease_is_dropped_unsent(
    workers: tuple[LeasedSqliteStore, LeasedSqliteStore],
) -> None:
    """A session that started as its lease ended: nothing of it reaches the store."""
    a, _ = workers
    scheduled = Scheduled()
    commits = GroupCommit(a, scheduled)
    heard: list[bool] = []
    commits.save("kitchen", DeviceState(mode=2), heard.append, lease=commits.lease("kitchen"))
    scheduled.run()
    assert heard == [False]
    assert commits.stale.dropped[STALE_SAVE] == 1
    assert commits.lease_ended_saves == 0, "not sent to be refused"
    assert stored_mode(a, "kitchen") is None
