"""The SQLite audit log keeps the newest entries and forgets the oldest, so it never fills the disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

from admin.audit import AuditEntry, SqliteAuditLog


def entry(number: int) -> AuditEntry:
    return AuditEntry(float(number), "operator", "operator", "mode", f"device-{number}", (), {"mode": 1})


def ids(log: SqliteAuditLog) -> list[int]:
    return [kept.id for kept in asyncio.run(log.entries(1_000))]


def test_the_log_is_trimmed_to_its_newest_entries_as_it_grows(tmp_path: Path) -> None:
    log = SqliteAuditLog(str(tmp_path / "state.db"), capacity=10, trim_every=5)
    for number in range(1, 31):
        log.record(entry(number))
    kept = ids(log)
    assert kept[0] == 30
    assert 10 <= len(kept) < 10 + 5
    assert kept == list(range(30, 30 - len(kept), -1))  # the newest, none missing between
    log.close()


def test_a_log_kept_larger_is_cut_to_the_capacity_when_opened(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    log = SqliteAuditLog(path, capacity=1_000)
    for number in range(1, 51):
        log.record(entry(number))
    log.close()
    reopened = SqliteAuditLog(path, capacity=20)
    assert ids(reopened) == list(range(50, 30, -1))
    reopened.record(entry(51))
    assert ids(reopened)[0] == 51  # ids keep counting up after a trim
    reopened.close()
