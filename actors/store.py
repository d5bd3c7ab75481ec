"""Where a device's state waits between connections and across server restarts.

What is kept is what a reconnect resumes: the mode (and the playback counter). The store
is an interface so that several replicas can later share one (e.g. Redis); SQLite is the
embedded default, a file on disk, with ``:memory:`` for tests.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from actors.state import DeviceState


class StateStore(Protocol):
    """Thread-safe: device actors save from their own threads."""

    def load(self, device_id: str) -> DeviceState | None: ...

    def save(self, device_id: str, state: DeviceState) -> None: ...

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
        with self._lock:
            self._states[device_id] = state
            self._states.move_to_end(device_id)
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)

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


class SqliteStateStore:
    """One row per device, written in its own transaction: a crash (even SIGKILL) loses nothing
    that was saved and never leaves a half-written row. WAL journal with synchronous=NORMAL:
    durable across process crashes; a power cut may lose the last few saves, never consistency."""

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

    def load(self, device_id: str) -> DeviceState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT mode, next_playback_id FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
        if row is None:
            return None
        return DeviceState(mode=int(row[0]), next_playback_id=int(row[1]))

    def save(self, device_id: str, state: DeviceState) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO devices (device_id, mode, next_playback_id) VALUES (?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET mode = excluded.mode, "
                "next_playback_id = excluded.next_playback_id, "
                "updated_at = (julianday('now') - 2440587.5) * 86400.0",
                (device_id, state.mode, state.next_playback_id),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM devices").fetchone()[0])


def open_store(location: str) -> StateStore:
    """``:memory:`` keeps state for the life of the process only; anything else is a SQLite file."""
    return SqliteStateStore(location)
