"""The audit log's record of commands this replica ran for another: who asked, from which replica.

The replica an operator asked records the action as it always does; the replica that holds the
device records that it ran it, so every command that moved a device is in the log from the side
that acted. An announcement relays one command per device: the commands of one kind, from one
replica, for one operator, that arrive within ``COALESCE_SECONDS`` are one entry (with each
device and how many ended which way), not thousands.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.messages import CommandResult
from admin.audit import MAX_DEVICES_RECORDED, AuditEntry

COALESCE_SECONDS = 0.25
ACTION = "relayed"


@dataclass
class _Batch:
    command: dict[str, Any]
    devices: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


class RelayedAudit:
    """Collects the relayed commands run here and records them, coalesced, through ``record``."""

    def __init__(
        self,
        record: Callable[[AuditEntry], object],
        clock: Callable[[], float] = time.time,
        coalesce: float = COALESCE_SECONDS,
    ) -> None:
        self._record = record
        self._clock = clock
        self._coalesce = coalesce
        self._batches: dict[tuple[str, str, str, str], _Batch] = {}
        self._flush: asyncio.TimerHandle | None = None

    def ran(
        self, asker: str, who: str, role: str, device_id: str, command: dict[str, Any], result: CommandResult
    ) -> None:
        key = (asker, who, role, json.dumps(command, sort_keys=True))
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(command)
        if len(batch.devices) < MAX_DEVICES_RECORDED:
            batch.devices.append(device_id)
        batch.outcomes[result.outcome.value] += 1
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self._coalesce, self.flush)

    def flush(self) -> None:
        """Record what was collected (at once: when the relay stops)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        batches, self._batches = self._batches, {}
        for (asker, who, role, _), batch in batches.items():
            count = sum(batch.outcomes.values())
            self._record(
                AuditEntry(
                    self._clock(),
                    who,
                    role,
                    ACTION,
                    batch.devices[0] if count == 1 else f"{count} devices",
                    tuple(batch.devices),
                    {"command": batch.command, "from": asker, "results": dict(batch.outcomes)},
                )
            )
