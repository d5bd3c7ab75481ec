"""The audit log in Redis, so the operator API of any replica shows every replica's actions.

Entries are numbered by one Redis counter (newest first is highest first, across replicas)
and kept in a sorted set by number, trimmed to the newest ``capacity``. Recording never
waits on Redis: the API has answered the action already, so the entry is queued and written
in order, retried while Redis is unreachable (an entry waits in memory meanwhile, at most
MAX_WAITING_ENTRIES of them: beyond, new entries are dropped, counted and logged). An entry
read back that is not one the API wrote (``cluster.validation``) is left out and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging

import redis.asyncio as aioredis

from admin.audit import AuditEntry
from cluster import validation
from cluster.redis_io import Coalescing, write_in_order
from cluster.rejections import MALFORMED, Rejections
from cluster.shared_store import PREFIX

logger = logging.getLogger(__name__)

AUDIT = PREFIX + "audit"
AUDIT_NEXT = PREFIX + "audit:next"
CAPACITY = 100_000
MAX_WAITING_ENTRIES = 10_000
"""Entries that may wait in memory for Redis; an outage's further actions are not audited."""

_RECORD = """
local id = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], id, id .. ' ' .. ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
return id
"""


class SharedAuditLog:
    def __init__(self, client: aioredis.Redis, capacity: int = CAPACITY, *, rejections: Rejections) -> None:
        self._client = client
        self._rejections = rejections
        self._capacity = capacity
        self._script = client.register_script(_RECORD)
        self.writes: Coalescing[int, AuditEntry] = Coalescing(MAX_WAITING_ENTRIES)
        """Entries not in Redis yet (each its own: none replaces another)."""
        self._numbers = itertools.count()
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_in_order(), name="audit-writes")

    def record(self, entry: AuditEntry) -> int:
        """Queued: 0, since the number is Redis's to give."""
        if not self.writes.put(next(self._numbers), entry) and self.writes.dropped % 1000 == 1:
            logger.error(
                "audit entries are being dropped: %d wait for the shared store (counted in metrics)",
                len(self.writes),
            )
        return 0

    async def entries(self, limit: int, before: int | None = None) -> list[AuditEntry]:
        high = f"({before}" if before is not None else "+inf"
        rows = await self._client.zrevrangebyscore(AUDIT, high, "-inf", start=0, num=limit)
        entries: list[AuditEntry] = []
        for row in rows:
            try:
                entries.append(validation.audit_row(row))
            except validation.Malformed as error:
                self._rejections.reject("audit-entry", MALFORMED, str(error))
        return entries

    def close(self) -> None:
        """The writer is stopped by ``aclose``."""

    async def aclose(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.writes.join()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.wait([self._writer], timeout=2.0)

    async def _write_in_order(self) -> None:
        await write_in_order(
            self.writes,
            self._write,
            failed=lambda _, error: logger.warning("audit entry not written yet: %s", error),
        )

    async def _write(self, entry: AuditEntry) -> None:
        body = json.dumps(
            {
                "at": entry.at,
                "who": entry.who,
                "role": entry.role,
                "action": entry.action,
                "target": entry.target,
                "devices": list(entry.devices),
                "result": entry.result,
            }
        )
        await self._script(keys=[AUDIT, AUDIT_NEXT], args=[body, self._capacity])
