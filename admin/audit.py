"""The audit log: every action taken through the operator API, who took it and how it ended.

Kept in the state store's SQLite file (its own table and connection), in memory when the
server keeps no state, or in Redis for replicas sharing a store (``cluster.shared_audit``).
Written on the loop's thread: one small insert per action.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Protocol

MAX_DEVICES_RECORDED = 1_000
"""An action on more devices records the first ones and how many there were in all."""

CAPACITY = 100_000
"""Entries kept: the newest ones. An operator acting all day long for years must not fill the disk."""

TRIM_EVERY = 1_000
"""Inserts between two trims of the SQLite log: one DELETE a thousand actions costs nothing."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    who: str
    role: str
    action: str
    target: str
    devices: tuple[str, ...]
    result: dict[str, Any]
    id: int = 0

    def to_json(self, iso: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at),
            "who": self.who,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "devices": list(self.devices),
            "result": self.result,
        }


class AuditLog(Protocol):
    def record(self, entry: AuditEntry) -> int: ...

    async def entries(self, limit: int, before: int | None = None) -> list[AuditEntry]:
        """Newest first."""
        ...

    def close(self) -> None: ...


def recorded_devices(devices: list[str]) -> tuple[str, ...]:
    return tuple(devices[:MAX_DEVICES_RECORDED])


class MemoryAuditLog:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._entries: list[AuditEntry] = []
        self._capacity = capacity
        self._next = 1

    def record(self, entry: AuditEntry) -> int:
        kept = AuditEntry(
            entry.at,
            entry.who,
            entry.role,
            entry.action,
            entry.target,
            entry.devices,
            entry.result,
            self._next,
        )
        self._next += 1
        self._entries.append(kept)
        del self._entries[: -self._capacity]
        return kept.id

    async def entries(self, limit: int, before: int | None = None) -> list[AuditEntry]:
        found = [entry for entry in reversed(self._entries) if before is None or entry.id < before]
        return found[:limit]

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    devices TEXT NOT NULL,
    result TEXT NOT NULL
)
"""


class SqliteAuditLog:
    """Trimmed to the newest ``capacity`` entries, like the memory and Redis logs."""

    def __init__(self, path: str, capacity: int = CAPACITY, trim_every: int = TRIM_EVERY) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._capacity, self._trim_every = capacity, trim_every
        self._since_trim = 0
        self._trim()  # a log kept by an older version, or with a larger capacity, is cut at once

    def record(self, entry: AuditEntry) -> int:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO audit (at, who, role, action, target, devices, result) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.at,
                    entry.who,
                    entry.role,
                    entry.action,
                    entry.target,
                    json.dumps(list(entry.devices)),
                    json.dumps(entry.result),
                ),
            )
            self._since_trim += 1
            if self._since_trim >= self._trim_every:
                self._trim()
        return int(cursor.lastrowid or 0)

    def _trim(self) -> None:
        """Forget all but the newest ``capacity`` entries; ids keep counting up (AUTOINCREMENT)."""
        self._since_trim = 0
        self._db.execute("DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?", (self._capacity,))

    async def entries(self, limit: int, before: int | None = None) -> list[AuditEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, who, role, action, target, devices, result FROM audit "
                "WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before if before is not None else 2**62, limit),
            ).fetchall()
        return [
            AuditEntry(
                float(row[1]),
                row[2],
                row[3],
                row[4],
                row[5],
                tuple(json.loads(row[6])),
                json.loads(row[7]),
                int(row[0]),
            )
            for row in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_audit_log(state_db: str) -> AuditLog:
    return MemoryAuditLog() if state_db == ":memory:" else SqliteAuditLog(state_db)
