"""Where a device's state waits between connections and across server restarts.

What is kept is what a reconnect resumes: the mode (and the playback counter). The store
is an interface so that several replicas can later share one (e.g. Redis); SQLite is the
embedded default, a file on disk, with ``:memory:`` for tests.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from actors.state import DeviceState

logger = logging.getLogger(__name__)


class StateStore(Protocol):
    """Thread-safe. ``save_many`` writes all of its states or none (one transaction)."""

    def load(self, device_id: str) -> DeviceState | None: ...

    def save(self, device_id: str, state: DeviceState) -> None: ...

    def save_many(self, states: Sequence[tuple[str, DeviceState]]) -> None: ...

    def close(self) -> None: ...


class StoreError(RuntimeError):
    """The state store cannot be opened or used; the message names the file."""


class MemoryStateStore:
    """Keeps the most recently seen devices; the least recently used are forgotten past ``capacity``."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._states: OrderedDict[str, DeviceState] = OrderedDict()
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
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)

    def save_many(self, states: Sequence[tuple[str, DeviceState]]) -> None:
        for device_id, state in states:
            self.save(device_id, state)

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._states)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    mode INTEGER NOT NULL,
    next_playback_id INTEGER NOT NULL,
    updated_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) WITHOUT ROWID
"""


_UPSERT = (
    "INSERT INTO devices (device_id, mode, next_playback_id) VALUES (?, ?, ?) "
    "ON CONFLICT (device_id) DO UPDATE SET mode = excluded.mode, "
    "next_playback_id = excluded.next_playback_id, "
    "updated_at = (julianday('now') - 2440587.5) * 86400.0"
)

CHECKPOINT_INTERVAL = 1.0
"""Seconds between WAL checkpoints, which run on a thread of their own."""


class SqliteStateStore:
    """One row per device; every save is a committed transaction: a crash (even SIGKILL) loses
    nothing that was saved and never leaves a half-written row. WAL journal with
    synchronous=NORMAL: durable across process crashes; a power cut may lose the last few
    saves, never consistency.

    A commit appends to the WAL (no fsync); the checkpoint that copies the WAL into the
    database and syncs it is the slow part, so it runs on a thread of its own every
    ``CHECKPOINT_INTERVAL`` instead of inside whichever save crosses the WAL's size limit
    (that save would stall the event loop the actors run on for milliseconds)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
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
