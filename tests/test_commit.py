"""Group commit over the real SQLite store: saves that arrive together share one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from actors.commit import GroupCommit
from actors.state import DeviceState
from actors.store import SqliteStateStore


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


class CountingStore(SqliteStateStore):
    """The real store, counting its transactions."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions: list[int] = []
        self.fail = False

    def save_many(self, states: Sequence[tuple[str, DeviceState]]) -> None:
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        super().save_many(states)
        self.transactions.append(len(states))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    store = CountingStore(tmp_path / "devices.sqlite3")
    yield store
    store.close()


def test_saves_made_before_the_commit_runs_share_one_transaction(store: CountingStore) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    for n in range(50):
        commits.save(f"device-{n}", DeviceState(mode=n % 5))
    assert len(scheduled.calls) == 1
    scheduled.run()
    assert store.transactions == [50]
    assert store.load("device-7") == DeviceState(mode=2)


def test_a_save_is_reported_durable_only_after_its_transaction_commits(
    store: CountingStore, tmp_path: Path
) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    heard: list[bool] = []
    commits.save("kitchen", DeviceState(mode=3), heard.append)
    assert heard == []
    other = sqlite3.connect(tmp_path / "devices.sqlite3")
    assert other.execute("SELECT count(*) FROM devices").fetchone() == (0,)
    scheduled.run()
    assert heard == [True]
    assert other.execute("SELECT mode FROM devices WHERE device_id = 'kitchen'").fetchone() == (3,)
    other.close()


def test_a_load_sees_a_save_that_is_not_committed_yet(store: CountingStore) -> None:
    commits = GroupCommit(store, Scheduled())
    commits.save("kitchen", DeviceState(mode=4))
    assert commits.load("kitchen") == DeviceState(mode=4)


def test_the_newest_of_several_saves_of_one_device_is_what_is_written(store: CountingStore) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    for mode in (1, 2, 3):
        commits.save("kitchen", DeviceState(mode=mode))
    scheduled.run()
    assert store.transactions == [1]
    assert store.load("kitchen") == DeviceState(mode=3)


def test_a_failed_commit_reports_not_durable_and_keeps_the_saves_for_the_next_commit(
    store: CountingStore,
) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    heard: list[bool] = []
    store.fail = True
    commits.save("kitchen", DeviceState(mode=2), heard.append)
    scheduled.run()
    assert heard == [False]
    store.fail = False
    commits.save("hall", DeviceState(mode=1), heard.append)
    scheduled.run()
    assert heard == [False, True]
    assert store.load("kitchen") == DeviceState(mode=2)


def test_closing_commits_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "devices.sqlite3"
    commits = GroupCommit(SqliteStateStore(path), Scheduled())
    commits.save("kitchen", DeviceState(mode=4))
    commits.close()
    reopened = SqliteStateStore(path)
    assert reopened.load("kitchen") == DeviceState(mode=4)
    reopened.close()


def test_the_wal_is_checkpointed_off_the_saving_thread(tmp_path: Path) -> None:
    path = tmp_path / "devices.sqlite3"
    store = SqliteStateStore(path)
    store.save_many([(f"device-{n}", DeviceState(mode=1)) for n in range(2000)])
    store.close()  # the checkpointer's last checkpoint truncates the WAL
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_claim_anew_forgets_the_devices_unsent_saves_and_nacks_them(store: CountingStore) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    heard: list[bool] = []
    commits.save("kitchen", DeviceState(mode=2), heard.append)
    commits.save("hall", DeviceState(mode=1))
    commits.forget("kitchen")
    assert heard == [False]
    assert commits.load("kitchen") is None, "the store's state, not the stale save"
    scheduled.run()
    assert store.load("hall") == DeviceState(mode=1)
    assert store.load("kitchen") is None
