"""A device's lease: which ownership of the device something belongs to.

Every claim of a device (by a replica through Redis, or by a worker through the shared SQLite
file) raises the device's epoch; the lease is the device_id with that epoch. A session, each
save it makes, and each eviction of it carry their lease, so that what belongs to an older
ownership can be told apart and dropped (never re-sent or acted on under a newer one): a save
stamped with an old lease is refused by the store, an eviction of an old lease leaves a newer
session alone.

A store without ownership (one process on its own SQLite file or memory) has no leases: its
saves carry ``UNLEASED`` and every one of them is current.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

UNLEASED = 0
"""The epoch of a save or session where no store decides ownership."""


@dataclass(frozen=True, slots=True)
class Lease:
    device_id: str
    epoch: int

    def __str__(self) -> str:
        return f"{self.device_id}@{self.epoch}"

    def covers(self, other: Lease | None) -> bool:
        """Whether ending this lease ends ``other`` too: the same device, at this epoch or before.
        An eviction of lease 5 must not end a session that holds lease 7."""
        return other is None or (other.device_id == self.device_id and other.epoch <= self.epoch)


@runtime_checkable
class Leases(Protocol):
    """A store that decides which process owns each device (Redis among replicas, SQLite among
    workers)."""

    def lease(self, device_id: str) -> Lease | None:
        """The lease this process holds on the device now; None if it holds none."""
        ...


STALE_SAVE = "save"
"""A save of an older lease: dropped, not sent (or not sent again)."""
STALE_EVICTION = "eviction"
"""An eviction of an older lease than the device's current session: ignored."""
STALE_ANSWER = "answer"
"""A store's answer (a refusal) about an older lease than the one held now: no eviction."""


class StaleLeases:
    """How many things of an older lease were dropped, by kind (``acp_stale_lease_total``)."""

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()

    def drop(self, kind: str, count: int = 1) -> None:
        self.dropped[kind] += count
