"""Device leases among the ``--workers`` of one host, in the SQLite file they share.

The workers are separate processes: a device whose connection froze on one worker and that
reconnected to another is held by both until the frozen connection dies, and the old
worker's final save of it must not overwrite what the new one acked meanwhile. So a worker
claims a device before serving it (``claim``: the device's epoch in the ``leases`` table goes
up by one and names this worker's process), and a save is written only if the lease it was
made under is still the device's: the check is inside the same statement as the write
(``_LEASED_UPSERT``), in one transaction, so no other worker's claim can fall in between.

A worker hears that another took a device from its refused save (the group commit evicts the
session of that lease) or, before serving a new stream of the device, from ``owns``, which
reads the device's lease from the file each time (a primary-key read) rather than trusting
what this process remembers.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from actors.lease import Lease
from actors.state import DeviceState
from actors.store import SqliteStateStore, StoreUnavailable

logger = logging.getLogger(__name__)

_LEASES = """
CREATE TABLE IF NOT EXISTS leases (
    device_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    owner TEXT NOT NULL
) WITHOUT ROWID
"""

_CLAIM = (
    "INSERT INTO leases (device_id, epoch, owner) VALUES (?, 1, ?) "
    "ON CONFLICT (device_id) DO UPDATE SET epoch = epoch + 1, owner = excluded.owner "
    "RETURNING epoch"
)

_LEASED_UPSERT = (
    "INSERT INTO devices (device_id, mode, next_playback_id) SELECT ?, ?, ? "
    "WHERE EXISTS (SELECT 1 FROM leases WHERE device_id = ? AND epoch = ? AND owner = ?) "
    "ON CONFLICT (device_id) DO UPDATE SET mode = excluded.mode, "
    "next_playback_id = excluded.next_playback_id, "
    "updated_at = (julianday('now') - 2440587.5) * 86400.0"
)
"""Writes the save only while its lease (epoch and owner) is the device's: no row otherwise."""


def worker_owner(worker_index: int) -> str:
    """This process's name in the leases table: a restarted worker (same index) is another owner."""
    return f"worker{worker_index}/pid{os.getpid()}/{secrets.token_hex(4)}"


class LeasedSqliteStore(SqliteStateStore):
    """The SQLite store with device leases: ``Claims`` for the gateway, ``Leases`` and
    ``LeasedSaves`` for the group commit."""

    def __init__(self, path: str | Path, owner: str) -> None:
        super().__init__(path)
        self.owner = owner
        self._held: dict[str, int] = {}
        """device_id -> the epoch this process claimed it with."""
        self.on_lease_ended: Callable[[Lease], None] = lambda lease: None
        """Told a lease this process held once it saw another's claim of the device."""
        self.on_claimed: Callable[[str], None] = lambda device_id: None
        """Told the device_id once claimed anew (saves of an earlier lease are stale)."""
        with self._lock:
            self._db.execute(_LEASES)

    def lease(self, device_id: str) -> Lease | None:
        epoch = self._held.get(device_id)
        return None if epoch is None else Lease(device_id, epoch)

    def owns(self, device_id: str) -> bool:
        """Read from the file: another worker may have claimed the device since."""
        held = self._held.get(device_id)
        if held is None:
            return False
        with self._lock:
            row = self._db.execute(
                "SELECT epoch, owner FROM leases WHERE device_id = ?", (device_id,)
            ).fetchone()
        if row is not None and int(row[0]) == held and row[1] == self.owner:
            return True
        del self._held[device_id]
        lease = Lease(device_id, held)
        logger.info("device %s: lease %s over, another worker owns it now", device_id, lease)
        self.on_lease_ended(lease)
        return False

    async def claim(self, device_id: str) -> None:
        try:
            with self._lock:
                rows = self._db.execute(_CLAIM, (device_id, self.owner)).fetchall()
        except sqlite3.Error as error:
            raise StoreUnavailable(
                f"cannot claim the device in the state store {self.path}: {error}; reconnect later"
            ) from error
        self._held[device_id] = int(rows[0][0])
        self.on_claimed(device_id)

    def save_leased(
        self, states: Sequence[tuple[str, DeviceState]], epochs: Mapping[str, int]
    ) -> frozenset[str]:
        refused: set[str] = set()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for device_id, state in states:
                    epoch = epochs.get(device_id)
                    if epoch is None:
                        refused.add(device_id)
                        continue
                    cursor = self._db.execute(
                        _LEASED_UPSERT,
                        (device_id, state.mode, state.next_playback_id, device_id, epoch, self.owner),
                    )
                    if cursor.rowcount == 0:
                        refused.add(device_id)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        for device_id in refused:
            if self._held.get(device_id) == epochs.get(device_id):
                del self._held[device_id]  # the group commit evicts the session of that lease
        return frozenset(refused)
