"""Group commit: the saves that arrive together share one transaction, each durable before its ack.

Device actors save a state before they ack the press that changed it. One transaction per
save made the store the press path's bottleneck under a press storm (and, on a thread, a
lock every actor queued on). Here a save joins the current batch; the batch is committed
once the runtime's thread has run what was already waiting (``schedule`` puts the commit
behind it), and then every save's ``then`` hears whether it is durable. A load sees the
saves not yet committed, so a device that reconnects at once resumes its newest state.

A store that answers later (``DeferredSaves``: a network store such as Redis) gets one batch
at a time; the saves made meanwhile form the next. Batches to it start at most every
``min_interval``: each request costs the loop far more than a SQLite commit does, so under a
press storm saves wait a few milliseconds to share one; an isolated save goes at once. A
batch the store could not take stays pending and is tried again after ``retry_delay``; a
save the store refused because its lease ended (another server holds the device now) is
dropped, and ``on_lease_ended`` hears of that lease.

Each save is stamped with its lease (``actors.lease``) when it is made: the session's, or the
one the store holds then. A save whose lease is no longer the store's (the device was claimed
anew meanwhile) is never sent, nor sent again after a failed batch, nor returned by ``load``:
it is dropped and counted in ``stale``. The store checks the stamp itself when it writes.

Used from one thread only: the actor runtime's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from actors.lease import STALE_SAVE, UNLEASED, Lease, Leases, StaleLeases
from actors.state import DeviceState
from actors.store import DeferredSaves, LeasedSaves, StateStore

logger = logging.getLogger(__name__)

Durable = Callable[[bool], None]
"""Told True once a save is committed; False if the commit failed (the save stays pending and
is tried again), or if it was refused or dropped because its lease ended."""

RETRY_DELAY = 0.5
"""Seconds before a batch the store could not take is tried again."""

DEFERRED_MIN_INTERVAL = 0.005
"""Seconds between the starts of two batches to a deferred store."""

NOT_HELD = -1
"""The epoch of a session that started while this process held no lease on the device (it ended
in between): no save of it is ever sent."""

Stamped = tuple[DeviceState, int]
"""A save and the epoch of the lease it was made under."""


class GroupCommit:
    def __init__(
        self,
        store: StateStore,
        schedule: Callable[[Callable[[], None]], object],
        schedule_later: Callable[[float, Callable[[], None]], object] | None = None,
        on_lease_ended: Callable[[Lease], None] | None = None,
        retry_delay: float = RETRY_DELAY,
        min_interval: float = DEFERRED_MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        stale: StaleLeases | None = None,
    ) -> None:
        self._store = store
        self._schedule = schedule
        self._schedule_later = schedule_later
        self._on_lease_ended = on_lease_ended
        self._retry_delay = retry_delay
        self._deferred: DeferredSaves | None = store if isinstance(store, DeferredSaves) else None
        self._leases: Leases | None = store if isinstance(store, Leases) else None
        self._leased_saves: LeasedSaves | None = store if isinstance(store, LeasedSaves) else None
        self._min_interval = min_interval
        self._clock = clock
        self._last_batch_at = -float("inf")
        self._pending: dict[str, Stamped] = {}
        self._waiting: list[tuple[str, Durable]] = []
        self._scheduled = False
        self._in_flight: dict[str, Stamped] | None = None
        self.commits = 0
        self.saves = 0
        self.lease_ended_saves = 0
        """Saves the store refused because their lease had ended."""
        self.stale = stale if stale is not None else StaleLeases()

    def lease(self, device_id: str) -> Lease:
        """The lease a session starting now holds: the store's (``UNLEASED`` where nobody else
        can own the device; ``NOT_HELD`` where this process holds none)."""
        if self._leases is None:
            return Lease(device_id, UNLEASED)
        return self._leases.lease(device_id) or Lease(device_id, NOT_HELD)

    def _current(self, device_id: str) -> int:
        return self.lease(device_id).epoch

    def save(
        self, device_id: str, state: DeviceState, then: Durable | None = None, lease: Lease | None = None
    ) -> None:
        """``lease``: the session's, when it made the save; by default the one the store holds now."""
        epoch = self._current(device_id) if lease is None else lease.epoch
        self.saves += 1
        if epoch != self._current(device_id) or epoch == NOT_HELD:
            self.stale.drop(STALE_SAVE)
            logger.info("device %s: a save of its ended lease %d dropped", device_id, epoch)
            if then is not None:
                then(False)
            return
        self._pending[device_id] = (state, epoch)
        if then is not None:
            self._waiting.append((device_id, then))
        self._schedule_commit()

    def forget(self, device_id: str) -> None:
        """Drop the device's saves not yet sent: they were made while this server owned it before
        (a claim has just taken it anew), and the store's state is newer. A batch already out
        carries the old epoch and is refused by the store itself."""
        if self._pending.pop(device_id, None) is None:
            return
        kept: list[tuple[str, Durable]] = []
        for waiting in self._waiting:
            if waiting[0] == device_id:
                waiting[1](False)
            else:
                kept.append(waiting)
        self._waiting = kept

    def load(self, device_id: str) -> DeviceState | None:
        """The newest save of the device's current lease; the store's state if there is none (a
        save of an older lease, even one still on its way, is not what a new session resumes)."""
        current = self._current(device_id)
        for saves in (self._pending, self._in_flight or {}):
            stamped = saves.get(device_id)
            if stamped is not None and stamped[1] == current:
                return stamped[0]
        return self._store.load(device_id)

    def load_desired(self, device_id: str) -> int | None:
        return self._store.load_desired(device_id)

    def set_desired(self, device_id: str, mode: int) -> None:
        """Written at once, not batched: an operator's request, not the press path."""
        self._store.set_desired(device_id, mode)

    def clear_desired(self, device_id: str, mode: int) -> None:
        self._store.clear_desired(device_id, mode)

    def count(self) -> int:
        return self._store.count()

    def unseen_since(self, moment: float) -> list[str]:
        """Not the devices with a save on its way: they have just been seen."""
        return [device_id for device_id in self._store.unseen_since(moment) if not self._saving(device_id)]

    def touch(self, device_ids: Sequence[str], moment: float) -> None:
        self._store.touch(device_ids, moment)

    def remove(
        self, device_ids: Sequence[str], unseen_since: float | None, done: Callable[[frozenset[str]], None]
    ) -> None:
        """Delete the records. An operator's removal (no ``unseen_since``) drops the devices' saves
        not yet sent, which would write the records back; a sweep leaves out the devices with a
        save on its way."""
        if unseen_since is not None:
            device_ids = [device_id for device_id in device_ids if not self._saving(device_id)]
        else:
            for device_id in device_ids:
                self.forget(device_id)
        self._store.remove(device_ids, unseen_since, done)

    def _saving(self, device_id: str) -> bool:
        return device_id in self._pending or (self._in_flight is not None and device_id in self._in_flight)

    @property
    def idle(self) -> bool:
        """Nothing waiting to be saved and no batch out."""
        return not self._pending and self._in_flight is None

    def _schedule_commit(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        if self._deferred is not None and self._schedule_later is not None:
            wait = self._last_batch_at + self._min_interval - self._clock()
            if wait > 0:
                self._schedule_later(wait, self.commit)
                return
        self._schedule(self.commit)

    def commit(self) -> None:
        """Write the batch in one transaction, then tell every waiting save how it went."""
        self._scheduled = False
        if not self._pending or self._in_flight is not None:
            return  # a deferred batch still out: its answer schedules the next
        batch, waiting = self._pending, self._waiting
        self._pending, self._waiting = {}, []
        states = [(device_id, state) for device_id, (state, _) in batch.items()]
        epochs = {device_id: epoch for device_id, (_, epoch) in batch.items()}
        if self._deferred is not None:
            self._in_flight = batch
            self._last_batch_at = self._clock()
            self._deferred.submit(states, lambda outcome: self._answered(batch, waiting, outcome), epochs)
            return
        try:
            if self._leased_saves is not None:
                refused = self._leased_saves.save_leased(states, epochs)
            else:
                self._store.save_many(states)
                refused = frozenset()
        except Exception as error:  # the store names its file; the saves stay for the next commit
            self._answered(batch, waiting, error)
            return
        self._answered(batch, waiting, refused)

    def _answered(
        self,
        batch: dict[str, Stamped],
        waiting: Sequence[tuple[str, Durable]],
        outcome: frozenset[str] | Exception,
    ) -> None:
        self._in_flight = None
        if isinstance(outcome, Exception):
            logger.error("could not save %d device states: %s", len(batch), outcome)
            # Tried again only under the lease they were made with: a device claimed anew since
            # starts from the store's state, and its old saves are dropped.
            kept = {
                device_id: stamped
                for device_id, stamped in batch.items()
                if stamped[1] == self._current(device_id)
            }
            if len(kept) < len(batch):
                self.stale.drop(STALE_SAVE, len(batch) - len(kept))
                logger.info("%d saves of older leases dropped, not sent again", len(batch) - len(kept))
            self._pending = {**kept, **self._pending}  # newer saves of the same devices win
            for _, then in waiting:
                then(False)
            self._retry_later()
            return
        self.commits += 1
        for device_id in outcome:
            self.lease_ended_saves += 1
            logger.warning(
                "device %s: not saved, its lease %d is over (another server owns it now)",
                device_id,
                batch[device_id][1] if device_id in batch else -1,
            )
        for device_id, then in waiting:
            then(device_id not in outcome)
        if self._on_lease_ended is not None:
            for device_id in outcome:
                if device_id in batch:
                    self._on_lease_ended(Lease(device_id, batch[device_id][1]))
        if self._pending:
            self._schedule_commit()

    def _retry_later(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        if self._schedule_later is None:
            self._scheduled = False  # the next save schedules the retry
            return
        self._schedule_later(self._retry_delay, self.commit)

    def close(self) -> None:
        """Commit what is pending, then close the store."""
        self.commit()
        self._store.close()
