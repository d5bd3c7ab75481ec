"""The operator's live view of the whole fleet on every replica.

Each replica publishes the snapshots its fleet view flushes for its own devices (already
coalesced, one message per flush) and keeps them in a hash of its own, so a replica that
starts later, or whose feed broke, reads what everyone holds now. Every replica applies the
others' snapshots to its view; the live events (SSE) of any replica thereby cover every
device. A replica whose heartbeat key expired is gone: its devices show offline until they
reconnect elsewhere, and its hash is removed.

Redis pub/sub is fire-and-forget, which suits snapshots: a lost one is superseded by the next
flush of that device, and a gap in the feed is repaired by reading the hashes again.

Messages and hash values are sealed (``cluster.replica_auth``) and every snapshot is checked
(``cluster.validation``) before the view takes it: a writer without the replicas' secret cannot
show a device that is not there, or take one offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from admin.fleetview import FleetView
from cluster import validation
from cluster.redis_io import Coalescing, follow
from cluster.rejections import MALFORMED, MISDIRECTED, Rejections
from cluster.replica_auth import MessageSeal, read_sealed, sender_of
from cluster.shared_store import PREFIX, REPLICAS, replica_key

logger = logging.getLogger(__name__)

FLEET = PREFIX + "fleet"
"""The channel replicas publish their devices' snapshots on: sealed lists of snapshots."""
MAX_SNAPSHOTS_BYTES = 32 * 1024 * 1024
"""A flush after a mass reconnect can hold thousands of snapshots of a few hundred bytes each."""
MAX_SNAPSHOT_BYTES = 16 * 1024
LIVENESS_INTERVAL = 1.0
MAX_WAITING_SNAPSHOTS = 100_000
"""Devices whose latest snapshot may wait to be published (one each, however long Redis is away);
beyond, a new device's snapshot is dropped and counted: the feed's repair after the outage
publishes every local device's snapshot again."""


def live_key(replica: str) -> str:
    return f"{PREFIX}live:{replica}"


class FleetShare:
    def __init__(
        self,
        client: aioredis.Redis,
        replica: str,
        fleet: FleetView,
        round_trips: Counter[str] | None = None,
        *,
        seal: MessageSeal,
        rejections: Rejections,
    ) -> None:
        self._client = client
        self._seal = seal
        self._rejections = rejections
        self._round_trips = round_trips if round_trips is not None else Counter()
        self._replica = replica
        self._fleet = fleet
        self._tasks: list[asyncio.Task[None]] = []
        self.outbox: Coalescing[str, dict[str, Any]] = Coalescing(MAX_WAITING_SNAPSHOTS)
        """The snapshots not published yet: each device's latest only."""
        self.unpublished = 0
        """Snapshots Redis did not take (an outage): the next feed repair publishes them again."""
        self._closed = False

    async def start(self) -> None:
        self._fleet.on_local_flush = self._publish
        self._tasks = [
            asyncio.create_task(self._follow(), name="fleet-share"),
            asyncio.create_task(self._watch_replicas(), name="fleet-replicas"),
            asyncio.create_task(self._send_in_order(), name="fleet-publish"),
        ]

    async def aclose(self) -> None:
        """Last word: this replica's devices are offline, and its hash is gone."""
        self._fleet.flush()  # the devices' last news (offline, leaving) goes out first
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.outbox.join()
        self._closed = True
        self._fleet.on_local_flush = None
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        with contextlib.suppress(RedisError, OSError):
            await self._client.delete(live_key(self._replica))

    def _publish(self, snapshots: list[dict[str, Any]]) -> None:
        """Coalesced per device: while Redis is slow or away a device's newer snapshot replaces
        the waiting one, so an older "connected" never lands after a newer "offline", and what
        waits is one snapshot per device however long the outage lasts."""
        if not self._closed:
            for snapshot in snapshots:
                self.outbox.put(snapshot["device_id"], snapshot)

    async def _send_in_order(self) -> None:
        while True:
            snapshots = await self.outbox.get_all()
            try:
                await self._send(snapshots)
            finally:
                self.outbox.task_done()

    async def _send(self, snapshots: list[dict[str, Any]]) -> None:
        """Each snapshot encoded once: sealed for the hash and, joined, for the message."""
        key = live_key(self._replica)
        self._round_trips["fleet"] += 1
        held: dict[str, str] = {}
        gone: list[str] = []
        encoded: list[str] = []
        for snapshot in snapshots:
            text = json.dumps(snapshot, separators=(",", ":"))
            encoded.append(text)
            if snapshot["connected"] and snapshot.get("replica") == self._replica:
                held[snapshot["device_id"]] = self._seal.seal_json("live-snapshot", text)
            else:
                gone.append(snapshot["device_id"])
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                if held:
                    pipe.hset(key, mapping=held)  # type: ignore[arg-type]
                if gone:
                    pipe.hdel(key, *gone)
                pipe.publish(FLEET, self._seal.seal_json("snapshots", f"[{','.join(encoded)}]"))
                await pipe.execute()
        except (RedisError, OSError) as error:
            self.unpublished += len(snapshots)
            logger.debug("fleet snapshots not shared (the feed repairs it): %s", error)

    async def _follow(self) -> None:
        """The others' snapshots; after each (re)subscribe, read every replica's hash first."""

        async def handle(_: str, data: bytes | str) -> None:
            if sender_of(data) == self._replica:
                return
            opened = read_sealed(
                self._seal,
                self._rejections,
                "snapshots",
                data,
                MAX_SNAPSHOTS_BYTES,
                validation.snapshots,
                counted_as="snapshot",
            )
            if opened is None:
                return
            envelope, snapshots = opened
            for snapshot in snapshots:
                self._fleet.apply_remote(envelope.sender, snapshot)

        await follow(
            self._client,
            (FLEET,),
            handle,
            subscribed=lambda _: self._read_all(),
            closed=lambda: self._closed,
            lost=lambda error: logger.debug("fleet feed interrupted: %s", error),
        )

    async def _read_all(self) -> None:
        own = self._fleet.local_snapshots()
        if own:
            await self._send(own)
        for replica in await self._replicas():
            if replica == self._replica:
                continue
            held = await self._client.hgetall(live_key(replica))
            for field, value in held.items():
                snapshot = self._stored_snapshot(replica, field, value)
                if snapshot is not None:
                    self._fleet.apply_remote(replica, snapshot)

    def _stored_snapshot(self, replica: str, field: bytes | str, value: bytes | str) -> dict[str, Any] | None:
        """A snapshot kept in ``replica``'s hash, if that replica sealed it there for that device."""
        opened = read_sealed(
            self._seal,
            self._rejections,
            "live-snapshot",
            value,
            MAX_SNAPSHOT_BYTES,
            validation.snapshot,
            where=f"in {replica}'s hash: ",
            stored=True,
        )
        if opened is None:
            return None
        envelope, snapshot = opened
        if envelope.sender != replica or validation.text_of(field) != snapshot["device_id"]:
            self._rejections.reject(
                "live-snapshot", MISDIRECTED, f"{envelope.sender}'s snapshot moved into {replica}'s hash"
            )
            return None
        return snapshot

    async def _replicas(self) -> list[str]:
        """The replica set's names; one no replica could have is skipped and counted."""
        names: list[str] = []
        for member in await self._client.smembers(REPLICAS):
            try:
                names.append(validation.replica_name(validation.text_of(member)))
            except validation.Malformed as error:
                self._rejections.reject("replica-name", MALFORMED, str(error))
        return sorted(names)

    async def _watch_replicas(self) -> None:
        """A replica whose heartbeat key is gone: its devices are offline, its records removed."""
        while not self._closed:
            await asyncio.sleep(LIVENESS_INTERVAL)
            try:
                members = await self._replicas()
                if self._replica not in members and self._fleet.local_snapshots():
                    # Taken for gone (this replica's heartbeat lapsed, a stall or a partition) and
                    # its hash removed: the others learn again what it holds.
                    self._publish(self._fleet.local_snapshots())
                replicas = [replica for replica in members if replica != self._replica]
                if not replicas:
                    continue
                self._round_trips["liveness"] += 1
                beating = await self._client.mget([replica_key(replica) for replica in replicas])
                for replica, beat in zip(replicas, beating, strict=True):
                    if beat is None:
                        logger.warning("replica %s stopped beating: its devices are offline here", replica)
                        self._fleet.replica_gone(replica)
                        async with self._client.pipeline(transaction=False) as pipe:
                            pipe.srem(REPLICAS, replica)
                            pipe.delete(live_key(replica))
                            await pipe.execute()
            except (RedisError, OSError) as error:
                logger.debug("replica liveness not checked: %s", error)
