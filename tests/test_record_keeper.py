"""The record keeper over the real group commit and SQLite, the commit run when the test says:
the cap counts the new devices whose first saves have not reached the store yet."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.commit import GroupCommit
from actors.records import DAY, RecordKeeper, RecordLimits
from actors.state import DeviceState
from actors.store import SqliteStateStore
from tests.test_commit import Scheduled


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    store = SqliteStateStore(tmp_path / "devices.sqlite3")
    yield store
    store.close()


def admit(keeper: RecordKeeper, commits: GroupCommit, device_id: str) -> bool:
    """As the supervisor does: a device admitted is saved at once (the save waits for the commit)."""
    if keeper.refusal(device_id) is not None:
        return False
    commits.save(device_id, DeviceState())
    return True


def test_the_cap_counts_new_devices_whose_saves_are_still_waiting(store: SqliteStateStore) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    keeper = RecordKeeper(commits, RecordLimits(max_records=5))
    admitted = [admit(keeper, commits, f"made-up-{n}") for n in range(40)]  # one burst, no commit between
    scheduled.run()
    assert admitted.count(True) == 5
    assert store.count() == 5


def test_the_cap_is_counted_again_once_nothing_waits(store: SqliteStateStore) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    keeper = RecordKeeper(commits, RecordLimits(max_records=2))
    assert admit(keeper, commits, "kitchen")
    scheduled.run()
    removed: list[bool] = []
    keeper.remove("kitchen", removed.append)
    assert removed == [True]
    assert admit(keeper, commits, "hall")
    scheduled.run()
    assert admit(keeper, commits, "office")
    scheduled.run()
    assert not admit(keeper, commits, "attic")


def test_a_known_device_is_never_refused(store: SqliteStateStore) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    keeper = RecordKeeper(commits, RecordLimits(max_records=1))
    assert admit(keeper, commits, "kitchen")
    assert keeper.refusal("kitchen") is None
    scheduled.run()
    assert keeper.refusal("kitchen") is None
    assert keeper.refusal("hall") is not None


def test_a_sweep_leaves_out_a_device_whose_save_is_on_its_way(store: SqliteStateStore) -> None:
    store.save("kitchen", DeviceState(mode=2))
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    keeper = RecordKeeper(commits, RecordLimits(retention=30 * DAY))
    commits.save("kitchen", DeviceState(mode=3))  # it has just been seen: its save waits for the commit
    swept: list[frozenset[str]] = []
    keeper.sweep(time.time() + 31 * DAY, (), swept.append)
    assert swept == [frozenset()]
    scheduled.run()
    assert store.load("kitchen") == DeviceState(mode=3)


def test_an_operators_removal_drops_the_save_on_its_way(store: SqliteStateStore) -> None:
    store.save("kitchen", DeviceState(mode=2))
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    keeper = RecordKeeper(commits, RecordLimits())
    commits.save("kitchen", DeviceState(mode=3))  # its final state, not yet committed
    removed: list[bool] = []
    keeper.remove("kitchen", removed.append)
    scheduled.run()
    assert removed == [True]
    assert store.load("kitchen") is None


def test_refusals_at_the_cap_are_logged_once_per_burst(
    store: SqliteStateStore, caplog: pytest.LogCaptureFixture
) -> None:
    scheduled = Scheduled()
    commits = GroupCommit(store, scheduled)
    keeper = RecordKeeper(commits, RecordLimits(max_records=1))
    assert admit(keeper, commits, "kitchen")
    scheduled.run()
    with caplog.at_level(logging.INFO, logger="actors.records"):
        for n in range(100):
            assert not admit(keeper, commits, f"made-up-{n}")
        keeper.remove("kitchen", lambda removed: None)
        assert admit(keeper, commits, "hall")
    assert [record.getMessage() for record in caplog.records] == [
        "the device records are at their limit of 1: new devices are refused (first: 'made-up-0')",
        "new devices are admitted again, after 100 were refused",
    ]
