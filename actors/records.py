"""How many device records the server keeps, and for how long.

While devices are not authenticated, any client can make up device_ids, and every one it
makes up would otherwise be a record kept forever. Two limits stop that: a cap on the
records (a new device beyond it is refused at connect; a known device always gets in) and
a retention (records of devices not seen for that long are deleted by a periodic sweep).
An operator also removes one record by hand. None of them ever touches the record of a
connected device: the supervisor, which knows which devices are connected, decides.

Used from the actor runtime's thread only (the supervisor's), so it needs no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from actors.commit import GroupCommit

logger = logging.getLogger(__name__)

DAY = 86_400.0

SWEEP_INTERVAL_MAX = 3600.0
"""Seconds between two sweeps at most (an hour); shorter for a short retention."""


@dataclass(frozen=True)
class RecordLimits:
    max_records: int = 0
    """Records kept at most; 0: no cap (among replicas the shared store's claim enforces it)."""
    retention: float = 0.0
    """Seconds a record of a device not seen is kept; 0: kept until an operator removes it."""

    @property
    def sweep_interval(self) -> float:
        """A quarter of the retention at most: a connected device's record is refreshed by the
        sweep at half the retention, long before any sweep could take it for gone."""
        return min(SWEEP_INTERVAL_MAX, self.retention / 4)


class RecordKeeper:
    """The cap, the sweep and the removal, over the supervisor's group commit."""

    def __init__(self, store: GroupCommit, limits: RecordLimits) -> None:
        self._store = store
        self._limits = limits
        self._counted: int | None = None
        """The store's count when it was last asked (with nothing waiting to be saved)."""
        self._admitted: set[str] = set()
        """New devices admitted since then: their first saves may not be in the store yet."""
        self._refused = 0
        """New devices refused since the cap was reached: logged once per burst, not each."""

    def refusal(self, device_id: str) -> str | None:
        """Why a device that opens its first stream may not be served, or None.

        The store is counted only while no save is waiting; during a connect storm the
        devices admitted since the last count are added to it, so a storm cannot overshoot."""
        cap = self._limits.max_records
        if not cap or self._store.load(device_id) is not None:
            return None
        if self._counted is None or self._store.idle:
            self._counted, self._admitted = self._store.count(), set()
        if self._counted + len(self._admitted) >= cap:
            if not self._refused:
                logger.warning(
                    "the device records are at their limit of %d: new devices are refused (first: %r)",
                    cap,
                    device_id,
                )
            self._refused += 1
            return (
                f"the server keeps the records of its limit of {cap} devices and device_id"
                f" {device_id!r} is not one of them; an operator can remove devices"
                " (DELETE /api/devices/ID), or the server can authenticate its devices"
            )
        if self._refused:
            logger.info("new devices are admitted again, after %d were refused", self._refused)
            self._refused = 0
        self._admitted.add(device_id)
        return None

    def remove(self, device_id: str, done: Callable[[bool], None]) -> None:
        """An operator's removal of a device that is not connected."""
        self._counted = None
        self._store.remove([device_id], None, lambda removed: done(device_id in removed))

    def sweep(self, now: float, connected: Collection[str], done: Callable[[frozenset[str]], None]) -> None:
        """Refresh the connected devices' old records; delete the records of the others not seen
        within the retention. ``done`` is told the devices deleted."""
        retention = self._limits.retention
        if not retention:
            done(frozenset())
            return
        aging = self._store.unseen_since(now - retention / 2)
        self._store.touch([device_id for device_id in aging if device_id in connected], now)
        gone = [device_id for device_id in aging if device_id not in connected]
        if not gone:
            done(frozenset())
            return
        self._counted = None
        self._store.remove(gone, now - retention, done)
