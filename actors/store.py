"""Where a device's state waits between connections and across server restarts.

What is kept is what a reconnect resumes: the mode (and the playback counter). The store
is an interface so that several replicas can share one (``cluster.shared_store``, Redis);
SQLite is the embedded default, a file on disk, with ``:memory:`` for tests.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from actors.state import DeviceState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """What the store knows of a device between connections, for the operator's fleet view."""

    device_id: str
    mode: int
    tags: tuple[str, ...] = ()
    desired_mode: int | None = None
    last_seen: float | None = None
    """Wall-clock time of the last save of the device's state (its last change or disconnect)."""


class StateStore(Protocol):
    """Thread-safe. ``save_many`` writes all of its states or none (one transaction).

    Beside each device's state: its tags and a desired mode (set by an operator while the
    device is offline), which saving the state leaves alone."""

    def load(self, device_id: str) -> DeviceState | None: ...

    def save(self, device_id: str, state: DeviceState) -> None: ...

    def save_many(self, states: Sequence[tuple[str, DeviceState]]) -> None: ...

    def records(self) -> list[DeviceRecord]: ...

    def save_tags(self, device_id: str, tags: Sequence[str]) -> None: ...

    def load_desired(self, device_id: str) -> int | None: ...

    def set_desired(self, device_id: str, mode: int) -> None: ...

    def clear_desired(self, device_id: str, mode: int) -> None:
        """Forget the desired mode if it is still ``mode`` (it has been applied)."""
        ...

    def count(self) -> int:
        """How many device records are kept: what a cap on them counts."""
        ...

    def unseen_since(self, moment: float) -> list[str]:
        """The devices whose record was last saved before ``moment`` (wall-clock seconds)."""
        ...

    def touch(self, device_ids: Sequence[str], moment: float) -> None:
        """Mark the records as seen at ``moment``: devices connected all along, so that no
        other process sharing the store takes them for gone."""
        ...

    def remove(
        self, device_ids: Sequence[str], unseen_since: float | None, done: Callable[[frozenset[str]], None]
    ) -> None:
        """Delete the devices' records (with ``unseen_since``: only those not saved since then);
        ``done`` is told the ids deleted, at once for a local store, later for a network one."""
        ...

    def close(self) -> None: ...


SaveOutcome = frozenset[str] | Exception
"""How a deferred batch went: the devices whose saves were refused because another server
owns them now (fencing), or the error that kept the whole batch out."""


@runtime_checkable
class DeferredSaves(Protocol):
    """A store that takes a batch and answers later, on the loop's thread (a network store)."""

    def submit(
        self,
        states: Sequence[tuple[str, DeviceState]],
        done: Callable[[SaveOutcome], None],
        epochs: Mapping[str, int] | None = None,
    ) -> None:
        """``epochs``: the lease each save was made under (by default the one held now)."""
        ...


@runtime_checkable
class LeasedSaves(Protocol):
    """A store that writes a save only while the save's lease is still the device's."""

    def save_leased(
        self, states: Sequence[tuple[str, DeviceState]], epochs: Mapping[str, int]
    ) -> frozenset[str]:
        """One transaction; returns the devices whose saves were refused (their lease is over)."""
        ...


class StoreUnavailable(RuntimeError):
    """A shared store cannot be reached now: the message says so and what the caller should do."""


class StoreFull(RuntimeError):
    """The store keeps as many device records as it may, and this device is not one of them."""


class StoreError(RuntimeError):
    """The state store cannot be opened or used; the message names the file."""


class MemoryStateStore:
    """Keeps the most recently seen devices; the least recently used are forgotten past ``capacity``."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._states: OrderedDict[str, DeviceState] = OrderedDict()
        self._records: dict[str, DeviceRecord] = {}
        self._lock = threading.Lock()

    def load(self, device_id: str) -> DeviceState | None:
        with self._lock:
            state = self._states.get(device_id)
            if state is not None:
                self._states.move_to_end(device_id)
            return state

    def save(self, device_id: str, state: DeviceState) -> None:
        kept = DeviceState(mode=state.mode, next_playback_id=state.next_playback_id)  # as SQLite keeps it
        with self._lock:
            self._states[device_id] = kept
            self._states.move_to_end(device_id)
            record = self._records.get(device_id) or DeviceRecord(device_id, state.mode)
            self._records[device_id] = replace(record, mode=state.mode, last_seen=time.time())
            while len(self._states) > self._capacity:
                forgotten, _ = self._states.popitem(last=False)
                self._records.pop(forgotten, None)

    def records(self) -> list[DeviceRecord]:
        with self._lock:
            return list(self._records.values())

    def save_tags(self, device_id: str, tags: Sequence[str]) -> None:
        with self._lock:
            record = self._records.get(device_id) or DeviceRecord(device_id, 0)
            self._records[device_id] = replace(record, tags=tuple(tags))

    def load_desired(self, device_id: str) -> int | None:
        with self._lock:
            record = self._records.get(device_id)
            return None if record is None else record.desired_mode

    def set_desired(self, device_id: str, mode: int) -> None:
        with self._lock:
            record = self._records.get(device_id) or DeviceRecord(device_id, 0)
            self._records[device_id] = replace(record, desired_mode=mode)

    def clear_desired(self, device_id: str, mode: int) -> None:
        with self._lock:
            record = self._records.get(device_id)
            if record is not None and record.desired_mode == mode:
                self._records[device_id] = replace(record, desired_mode=None)

    def save_many(self, states: Sequence[tuple[str, DeviceState]]) -> None:
        for device_id, state in states:
            self.save(device_id, state)

    def count(self) -> int:
        with self._lock:
            return len(self._records)

    def unseen_since(self, moment: float) -> list[str]:
        with self._lock:
            return [
                record.device_id
                for record in self._records.values()
                if record.last_seen is None or record.last_seen < moment
            ]

    def touch(self, device_ids: Sequence[str], moment: float) -> None:
        with self._lock:
            for device_id in device_ids:
                record = self._records.get(device_id)
                if record is not None:
                    self._records[device_id] = replace(record, last_seen=moment)

    def remove(
        self, device_ids: Sequence[str], unseen_since: float | None, done: Callable[[frozenset[str]], None]
    ) -> None:
        removed: set[str] = set()
        with self._lock:
            for device_id in device_ids:
                record = self._records.get(device_id)
                if record is None:
                    continue
                if (
                    unseen_since is not None
                    and record.last_seen is not None
                    and record.last_seen >= unseen_since
                ):
                    continue
                del self._records[device_id]
                self._states.pop(device_id, None)
                removed.add(device_id)
        done(frozenset(removed))

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._states)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    mode INTEGER NOT NULL,
    next_playback_id INTEGER NOT NULL,
    updated_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    tags TEXT NOT NULL DEFAULT '[]',
    desired_mode INTEGER
) WITHOUT ROWID
"""

_ADDED_COLUMNS = (
    ("tags", "TEXT NOT NULL DEFAULT '[]'"),
    ("desired_mode", "INTEGER"),
)
"""Columns a store file written by an earlier version lacks; added when it is opened."""


_UPSERT = (
    "INSERT INTO devices (device_id, mode, next_playback_id) VALUES (?, ?, ?) "
    "ON CONFLICT (device_id) DO UPDATE SET mode = excluded.mode, "
    "next_playback_id = excluded.next_playback_id, "
    "updated_at = (julianday('now') - 2440587.5) * 86400.0"
)

CHECKPOINT_INTERVAL = 1.0
"""Seconds between WAL checkpoints, which run on a thread of their own."""


BUSY_TIMEOUT = 10.0
"""Seconds SQLite waits for another connection's lock (another worker's commit) by default."""


class SqliteStateStore:
    """One row per device; every save is a committed transaction: a crash (even SIGKILL) loses
    nothing that was saved and never leaves a half-written row. WAL journal with
    synchronous=NORMAL: durable across process crashes; a power cut may lose the last few
    saves, never consistency.

    A commit appends to the WAL (no fsync); the checkpoint that copies the WAL into the
    database and syncs it is the slow part, so it runs on a thread of its own every
    ``CHECKPOINT_INTERVAL`` instead of inside whichever save crosses the WAL's size limit
    (that save would stall the event loop the actors run on for milliseconds)."""

    def __init__(self, path: str | Path, busy_timeout: float = BUSY_TIMEOUT) -> None:
        """``busy_timeout``: seconds a read or write waits for another connection's lock before
        it fails with "database is locked"."""
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            present = {row[1] for row in self._db.execute("PRAGMA table_info(devices)")}
            for column, declaration in _ADDED_COLUMNS:
                if column not in present:
                    self._db.execute(f"ALTER TABLE devices ADD COLUMN {column} {declaration}")
            self._db.execute("SELECT count(*) FROM devices").fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"cannot use the state store {self.path}: {error}") from error
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self.path != ":memory:":
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_until_closed, name="state-store-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_until_closed(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        try:
            while not self._closing.wait(CHECKPOINT_INTERVAL):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as error:
                    logger.warning("state store checkpoint failed: %s", error)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as error:
            logger.warning("state store final checkpoint failed: %s", error)
        finally:
            db.close()

    def load(self, device_id: str) -> DeviceState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT mode, next_playback_id FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
        if row is None:
            return None
        return DeviceState(mode=int(row[0]), next_playback_id=int(row[1]))

    def save(self, device_id: str, state: DeviceState) -> None:
        self.save_many(((device_id, state),))

    def save_many(self, states: Sequence[tuple[str, DeviceState]]) -> None:
        rows = [(device_id, state.mode, state.next_playback_id) for device_id, state in states]
        with self._lock:
            if len(rows) == 1:
                self._db.execute(_UPSERT, rows[0])
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_UPSERT, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def records(self) -> list[DeviceRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT device_id, mode, tags, desired_mode, updated_at FROM devices"
            ).fetchall()
        return [
            DeviceRecord(str(row[0]), int(row[1]), tuple(json.loads(row[2])), row[3], float(row[4]))
            for row in rows
        ]

    def save_tags(self, device_id: str, tags: Sequence[str]) -> None:
        """An upsert: the device's first state may still be waiting for its group commit."""
        with self._lock:
            self._db.execute(
                "INSERT INTO devices (device_id, mode, next_playback_id, tags) VALUES (?, 0, 1, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET tags = excluded.tags",
                (device_id, json.dumps(list(tags))),
            )

    def load_desired(self, device_id: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT desired_mode FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def set_desired(self, device_id: str, mode: int) -> None:
        """An upsert, like ``save_tags``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO devices (device_id, mode, next_playback_id, desired_mode) VALUES (?, 0, 1, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET desired_mode = excluded.desired_mode",
                (device_id, mode),
            )

    def clear_desired(self, device_id: str, mode: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE devices SET desired_mode = NULL WHERE device_id = ? AND desired_mode = ?",
                (device_id, mode),
            )

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM devices").fetchone()[0])

    def unseen_since(self, moment: float) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT device_id FROM devices WHERE updated_at < ?", (moment,)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def touch(self, device_ids: Sequence[str], moment: float) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE devices SET updated_at = max(updated_at, ?) WHERE device_id = ?",
                    [(moment, device_id) for device_id in device_ids],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def remove(
        self, device_ids: Sequence[str], unseen_since: float | None, done: Callable[[frozenset[str]], None]
    ) -> None:
        """One transaction; a device saved since ``unseen_since`` (by any process) is kept."""
        removed: set[str] = set()
        before = float("inf") if unseen_since is None else unseen_since
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for device_id in device_ids:
                    cursor = self._db.execute(
                        "DELETE FROM devices WHERE device_id = ? AND updated_at < ?", (device_id, before)
                    )
                    if cursor.rowcount:
                        removed.add(device_id)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        done(frozenset(removed))

    def close(self) -> None:
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(10)
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM devices").fetchone()[0])


def open_store(location: str) -> StateStore:
    """``:memory:`` keeps state for the life of the process only; anything else is a SQLite file."""
    return SqliteStateStore(location)
