"""Device state stores: what a reconnect or a restart resumes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from actors.records import DAY
from actors.state import DeviceState, Playback
from actors.store import MemoryStateStore, SqliteStateStore, StoreError


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryStateStore | SqliteStateStore:
    if request.param == "memory":
        return MemoryStateStore()
    return SqliteStateStore(tmp_path / "devices.sqlite3")


def test_an_unknown_device_has_no_saved_state(store: MemoryStateStore | SqliteStateStore) -> None:
    assert store.load("never-seen") is None


def test_a_saved_mode_is_loaded_back(store: MemoryStateStore | SqliteStateStore) -> None:
    store.save("kitchen", DeviceState(mode=3, next_playback_id=7))
    store.save("kitchen", DeviceState(mode=4, next_playback_id=8))
    loaded = store.load("kitchen")
    assert loaded is not None
    assert (loaded.mode, loaded.next_playback_id) == (4, 8)


def test_devices_are_kept_apart(store: MemoryStateStore | SqliteStateStore) -> None:
    store.save("kitchen", DeviceState(mode=1))
    store.save("hall", DeviceState(mode=2))
    assert [store.load(name).mode for name in ("kitchen", "hall")] == [1, 2]  # type: ignore[union-attr]


def test_saves_from_many_threads_are_all_kept(store: MemoryStateStore | SqliteStateStore) -> None:
    def work(thread: int) -> None:
        for mode in range(50):
            store.save(f"device-{thread}", DeviceState(mode=mode))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(store.load(f"device-{n}") == DeviceState(mode=49) for n in range(8))


def test_sqlite_state_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "devices.sqlite3"
    first = SqliteStateStore(path)
    first.save("kitchen", DeviceState(mode=2, next_playback_id=5))
    first.close()
    assert SqliteStateStore(path).load("kitchen") == DeviceState(mode=2, next_playback_id=5)


def test_sqlite_keeps_only_what_a_restart_resumes(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "devices.sqlite3")
    store.save("kitchen", DeviceState(mode=2, playing=Playback(4, 2), next_playback_id=5))
    assert store.load("kitchen") == DeviceState(mode=2, next_playback_id=5)


def test_a_file_that_is_not_a_database_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "devices.sqlite3"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    with pytest.raises(StoreError, match=str(path)):
        SqliteStateStore(path)


def test_the_store_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "devices.sqlite3"
    SqliteStateStore(path).save("kitchen", DeviceState(mode=1))
    assert path.exists()


def test_the_memory_store_forgets_the_least_recently_seen_past_its_capacity() -> None:
    store = MemoryStateStore(capacity=2)
    store.save("a", DeviceState(mode=1))
    store.save("b", DeviceState(mode=2))
    store.load("a")
    store.save("c", DeviceState(mode=3))
    assert store.load("b") is None
    assert store.load("a") == DeviceState(mode=1)


def removed_by(
    store: MemoryStateStore | SqliteStateStore, device_ids: list[str], unseen_since: float | None
) -> set[str]:
    answers: list[frozenset[str]] = []
    store.remove(device_ids, unseen_since, answers.append)
    [removed] = answers  # a local store answers at once
    return set(removed)


def test_a_removed_device_has_no_state_and_no_record(store: MemoryStateStore | SqliteStateStore) -> None:
    store.save("kitchen", DeviceState(mode=3))
    store.save_tags("kitchen", ["lobby"])
    store.save("hall", DeviceState(mode=1))
    assert removed_by(store, ["kitchen", "never-seen"], None) == {"kitchen"}
    assert store.load("kitchen") is None
    assert [record.device_id for record in store.records()] == ["hall"]
    assert store.count() == 1


def test_the_count_is_the_number_of_device_records(store: MemoryStateStore | SqliteStateStore) -> None:
    for n in range(7):
        store.save(f"device-{n}", DeviceState(mode=n % 5))
    store.save("device-0", DeviceState(mode=4))
    assert store.count() == 7


def test_devices_not_seen_since_a_moment_are_the_ones_saved_before_it(
    store: MemoryStateStore | SqliteStateStore,
) -> None:
    store.save("kitchen", DeviceState(mode=1))
    now = time.time()
    assert store.unseen_since(now - DAY) == []
    assert store.unseen_since(now + DAY) == ["kitchen"]


def test_a_removal_with_a_moment_keeps_the_devices_seen_since_then(
    store: MemoryStateStore | SqliteStateStore,
) -> None:
    store.save("kitchen", DeviceState(mode=1))
    assert removed_by(store, ["kitchen"], time.time() - DAY) == set()
    assert removed_by(store, ["kitchen"], time.time() + DAY) == {"kitchen"}


def test_a_touched_record_counts_as_seen_at_that_moment(store: MemoryStateStore | SqliteStateStore) -> None:
    store.save("kitchen", DeviceState(mode=1))
    later = time.time() + 20 * DAY
    store.touch(["kitchen"], later)
    assert store.unseen_since(later - DAY) == []
    assert removed_by(store, ["kitchen"], later - DAY) == set()
    assert store.load("kitchen") == DeviceState(mode=1)
