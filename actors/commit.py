"""Group commit: the saves that arrive together share one transaction, each durable before its ack.

Device actors save a state before they ack the press that changed it. One transaction per
save made the store the press path's bottleneck under a press storm (and, on a thread, a
lock every actor queued on). Here a save joins the current batch; the batch is committed
once the runtime's thread has run what was already waiting (``schedule`` puts the commit
behind it), and then every save's ``then`` hears whether it is durable. A load sees the
saves not yet committed, so a device that reconnects at once resumes its newest state.

Used from one thread only: the actor runtime's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from actors.state import DeviceState
from actors.store import StateStore

logger = logging.getLogger(__name__)

Durable = Callable[[bool], None]
"""Told True once a save is committed, False if the commit failed (the save stays pending)."""


class GroupCommit:
    def __init__(self, store: StateStore, schedule: Callable[[Callable[[], None]], None]) -> None:
        self._store = store
        self._schedule = schedule
        self._pending: dict[str, DeviceState] = {}
        self._waiting: list[Durable] = []
        self._scheduled = False
        self.commits = 0
        self.saves = 0

    def save(self, device_id: str, state: DeviceState, then: Durable | None = None) -> None:
        self._pending[device_id] = state
        self.saves += 1
        if then is not None:
            self._waiting.append(then)
        if not self._scheduled:
            self._scheduled = True
            self._schedule(self.commit)

    def load(self, device_id: str) -> DeviceState | None:
        pending = self._pending.get(device_id)
        return pending if pending is not None else self._store.load(device_id)

    def load_desired(self, device_id: str) -> int | None:
        return self._store.load_desired(device_id)

    def set_desired(self, device_id: str, mode: int) -> None:
        """Written at once, not batched: an operator's request, not the press path."""
        self._store.set_desired(device_id, mode)

    def clear_desired(self, device_id: str, mode: int) -> None:
        self._store.clear_desired(device_id, mode)

    def commit(self) -> None:
        """Write the batch in one transaction, then tell every waiting save how it went."""
        self._scheduled = False
        if not self._pending:
            return
        batch, waiting = self._pending, self._waiting
        self._waiting = []
        try:
            self._store.save_many(list(batch.items()))
        except Exception as error:  # the store names its file; the saves stay for the next commit
            logger.error("could not save %d device states: %s", len(batch), error)
            for then in waiting:
                then(False)
            return
        self._pending = {}
        self.commits += 1
        for then in waiting:
            then(True)

    def close(self) -> None:
        """Commit what is pending, then close the store."""
        self.commit()
        self._store.close()
