"""The fleet's state in Redis, shared by every replica, with ownership fenced by an epoch.

A device is owned by the replica that holds its streams. Taking it (``claim``, when its
first stream reaches a replica that does not own it) is one script in Redis: the device's
``epoch`` goes up by one and ``owner`` becomes this replica; the claim is then announced.
Every save of a device's state names the epoch it was claimed with, and the save script
writes it only if that epoch and owner are still the device's: a replica whose lease on a
device ended (another replica claimed it while this one was paused or cut off) cannot
overwrite what the new holder wrote. It hears that its lease ended from the published claim,
or at the latest from its next refused save, and ends the device's streams (``on_lease_ended``, told the lease that
ended). The device_id with the epoch is the device's lease (``actors.lease``): a save carries
the lease it was made under, never the one held when it is sent, and a refusal of an older
lease than the one held now ends nothing (it is counted in ``stale``).

The actors call the store from the loop's thread and must not wait on the network, so the
interface stays synchronous: reads come from a mirror of every device's record in this
process, which the claim refreshes for the device being connected (its owner's view is
the truth while it owns it) and which the claims, tags and desired modes other replicas
publish keep current (their state saves are not published: see ``_SAVE``); state saves go
out in batches (``submit``) and are answered on the loop; an operator's tag or desired-mode
write goes into the mirror at once and out to Redis in order, retried until Redis takes it.

Redis unreachable: connected devices go on being served, their saves wait (the group commit
retries them; a press is acked only once saved), new devices are refused with a clear
reason (nobody can claim them safely), the outage is logged once at its start and once at
its end, and counted. The mirror is loaded again when the change feed reconnects.

Nothing read from Redis is taken on trust: announcements are sealed (``cluster.replica_auth``)
and every announcement and stored field is checked (``cluster.validation``); what fails is
dropped and counted (``rejections``), a damaged field costing only that field.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from actors.lease import STALE_ANSWER, STALE_SAVE, Lease, StaleLeases
from actors.state import DeviceState
from actors.store import DeviceRecord, SaveOutcome, StoreFull, StoreUnavailable
from cluster import validation
from cluster.redis_io import follow, text, write_in_order
from cluster.rejections import MALFORMED, Rejections
from cluster.replica_auth import MessageSeal, Refused, sender_of
from cluster.store_access import StoreAccess

logger = logging.getLogger(__name__)

PREFIX = "acp:"
DEVICES = PREFIX + "devices"
"""The set of every device_id the fleet has seen."""
HELD = PREFIX + "live:"
"""Followed by a replica's name: the hash of the devices it holds (``fleet_share``)."""
REPLICAS = PREFIX + "replicas"
"""The set of replica names; each one's heartbeat key says whether it is alive."""
CHANGES = PREFIX + "changes"
"""The channel replicas announce their claims, operator writes and removals on, sealed (a replica
skips its own by the sender's name, without verifying them)."""
CHANGE_KINDS = frozenset({"claim", "field", "removed"})
MAX_CHANGE_BYTES = 64 * 1024
HEARTBEAT_INTERVAL = 1.0
REPLICA_TTL_MS = 3000
"""A replica whose heartbeat key is this old is gone."""
OP_TIMEOUT = 2.0
"""Seconds a Redis command may take before it counts as failed."""
REMOVE_BATCH = 500
MAX_WAITING_AT_ONCE = 32
"""Scripts that may wait for a replica's copy at once: each holds a connection while it waits,
and a reconnect storm's claims must not take every connection of the pool (redis-py's: 100)."""
MAX_WAITING_FIELDS = 200_000
"""Operator writes (a device's tags or desired mode, the latest of each) that may wait for Redis;
beyond, a write is dropped and counted (it holds on this replica until the mirror reloads)."""
"""Devices whose records one script removes at most."""


def device_key(device_id: str) -> str:
    return f"{PREFIX}device:{device_id}"


def replica_key(replica: str) -> str:
    return f"{PREFIX}replica:{replica}"


_CLAIM = """
local cap = tonumber(ARGV[4])
if cap > 0 and redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 and redis.call('SCARD', KEYS[2]) >= cap then
  return {0}
end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('HSETNX', KEYS[1], 'seen', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
local fields = redis.call('HMGET', KEYS[1], 'mode', 'next', 'tags', 'desired', 'seen')
return {epoch, fields[1], fields[2], fields[3], fields[4], fields[5]}
"""
"""Claim a device. The claim is announced by the claimant once it knows the epoch (a script
cannot seal a message: Redis has no HMAC)."""

_SAVE = """
local fenced = {}
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local current = redis.call('HMGET', KEYS[i], 'epoch', 'owner')
  if current[1] == ARGV[base + 2] and current[2] == ARGV[1] then
    redis.call('HSET', KEYS[i], 'mode', ARGV[base + 3], 'next', ARGV[base + 4], 'seen', ARGV[2])
  else
    fenced[#fenced + 1] = ARGV[base + 1]
  end
end
return fenced
"""
"""The fenced batch save. It announces nothing: a device's state matters to another replica only
once the device reaches it, and its claim reads the state then (announcing every save would
make each replica parse every other replica's saves: work that grows with the replica count).
The operator's view of the fleet gets modes from the replicas' snapshots (``fleet_share``)."""

_SET_FIELD = """
redis.call('HSETNX', KEYS[1], 'mode', 0)
redis.call('HSETNX', KEYS[1], 'next', 1)
redis.call('SADD', KEYS[2], ARGV[2])
if ARGV[4] == '' then
  if ARGV[5] == '' or redis.call('HGET', KEYS[1], ARGV[3]) == ARGV[5] then
    redis.call('HDEL', KEYS[1], ARGV[3])
  else
    return 0
  end
else
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
end
redis.call('PUBLISH', KEYS[3], ARGV[6])
return 1
"""
"""Set (or, with an empty value, delete: only if it still equals ARGV[5] when that is given)
one operator field of a device: its tags or its desired mode; announced (ARGV[6], sealed) only
if it was written."""

_REMOVE = """
local removed = {}
for i = 1, #KEYS - 2 do
  local id = ARGV[2 + i]
  local fields = redis.call('HMGET', KEYS[i], 'owner', 'seen')
  local held = fields[1] and redis.call('HEXISTS', ARGV[2] .. fields[1], id) == 1
  local fresh = ARGV[1] ~= '' and (fields[2] == false or tonumber(fields[2]) >= tonumber(ARGV[1]))
  if not held and not fresh then
    local existed = redis.call('DEL', KEYS[i])
    if redis.call('SREM', KEYS[#KEYS - 1], id) + existed > 0 then
      removed[#removed + 1] = id
    end
  end
end
return removed
"""
"""Delete devices' records: not one a replica holds (its fleet snapshot, ``fleet_share``'s
live hash, has the device), nor, with a time in ARGV[1], one seen since then. The epoch
goes with the record: a replica that still takes itself for the owner has its next save
refused (no epoch matches), and a device that connects again is claimed as a new one. The
caller announces what was removed (sealed)."""


class NotReplicated(RuntimeError):
    """The primary took a save but too few of its replicas confirmed it (``WAIT``): not acked,
    the group commit sends it again."""


@dataclass(slots=True)
class _Mirrored:
    record: DeviceRecord
    state: DeviceState | None


def _record(device_id: str, stored: validation.StoredDevice) -> _Mirrored:
    """No state without a stored mode: a device the fleet has not saved yet (or whose mode was
    damaged) starts afresh."""
    mode = stored.mode
    state = None if mode is None else DeviceState(mode=mode, next_playback_id=stored.next_playback_id or 1)
    record = DeviceRecord(device_id, mode or 0, stored.tags, stored.desired, stored.seen)
    return _Mirrored(record, state)


class SharedStore:
    """``StateStore`` and ``DeferredSaves`` over Redis; ``open`` it on the loop before use."""

    def __init__(
        self,
        url: str | StoreAccess,
        replica: str,
        clock: Callable[[], float] = time.time,
        on_outage: Callable[[bool], None] | None = None,
        max_records: int = 0,
        secret: bytes | None = None,
        wait_replicas: int = 0,
        wait_ms: int = 100,
    ) -> None:
        self.access = url if isinstance(url, StoreAccess) else StoreAccess(url)
        self._wait_replicas = wait_replicas
        """Replicas of Redis that must confirm a save (``WAIT``) before it is acked: a failover
        to one of them then loses nothing acked. 0: the primary's word is enough."""
        self._wait_ms = wait_ms
        self.unreplicated = 0
        """Save batches the primary took but not enough replicas confirmed in time (retried)."""
        self._replicating = asyncio.Semaphore(MAX_WAITING_AT_ONCE)
        self.replica = replica
        self.seal = MessageSeal(replica, secret, clock)
        """Seals what this replica announces and opens what the others do (the other parts too)."""
        self.rejections = Rejections()
        """What was read from Redis and refused (the other parts count here too)."""
        self._clock = clock
        self._max_records = max_records
        """Device records Redis may keep (0: no cap): a claim of a new device beyond them is refused."""
        self._on_outage = on_outage
        self.on_lease_ended: Callable[[Lease], None] = lambda lease: None
        """Told the lease that ended when another replica took a device this one owned."""
        self.stale = StaleLeases()
        """Saves and answers of older leases dropped here (the group commit counts here too)."""
        self.on_change: Callable[[DeviceRecord], None] = lambda record: None
        """Told of the records changed through the store: by another replica, or by an operator's
        write here (the operator's fleet view follows it)."""
        self.on_claimed: Callable[[str], None] = lambda device_id: None
        """Told the device_id once this replica has claimed a device anew (its saves from an
        earlier ownership are stale: the group commit forgets them)."""
        self.on_removed: Callable[[frozenset[str]], None] = lambda device_ids: None
        """Told of the devices whose records another replica removed (an operator, or its sweep)."""
        self._client: aioredis.Redis | None = None
        self._mirror: dict[str, _Mirrored] = {}
        self._owned: dict[str, int] = {}
        """device_id -> the epoch this replica claimed it with."""
        self._claiming: dict[str, asyncio.Future[int]] = {}
        self._claimed_meanwhile: dict[str, int] = {}
        """The highest epoch other replicas claimed a device with while this one's claim was out."""
        self._unwritten: dict[str, int] = {}
        """Operator writes queued per device: a mirror reload keeps those devices' entries."""
        self._writes: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue()
        self._waiting_fields: dict[tuple[str, str], tuple[str, str]] = {}
        """(device_id, field) -> the operator's latest value for it not written yet, and the value
        it may only replace ("" for any): one per field, however long Redis is away."""
        self.fields_replaced = 0
        self.fields_dropped = 0
        """Operator writes dropped: MAX_WAITING_FIELDS were waiting for Redis."""
        self._tasks: list[asyncio.Task[None]] = []
        self._announcing: set[asyncio.Task[None]] = set()
        self._down_since: float | None = None
        self.outages = 0
        self.round_trips: Counter[str] = Counter()
        """Requests sent to Redis, by what they were for (the other cluster parts count here too)."""
        self._closed = False

    # Lifecycle.

    async def open(self) -> None:
        """Connect, load the mirror, and start the change feed, the heartbeat and the writer."""
        if not self.seal.authenticated:
            logger.warning(
                "what the replicas say to each other through the shared store %s is not authenticated"
                " (no --store-secret-file): whoever can write to it can command every device",
                self.access,
            )
        if not self.access.authenticates and not self.access.on_this_machine:
            logger.warning(
                "the shared store %s is used without a password: whoever can reach it controls the fleet"
                " (see --store-password-file)",
                self.access,
            )
        self._client = self.access.client(
            socket_timeout=OP_TIMEOUT,
            socket_connect_timeout=OP_TIMEOUT,
            health_check_interval=5,
        )
        self._claim = self._client.register_script(_CLAIM)
        self._save = self._client.register_script(_SAVE)
        self._set_field = self._client.register_script(_SET_FIELD)
        self._remove = self._client.register_script(_REMOVE)
        loaded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        follower = asyncio.create_task(self._follow_changes(loaded), name="store-changes")
        try:
            await self._client.ping()
            async with asyncio.timeout(OP_TIMEOUT * 5):
                await loaded  # subscribed to the change feed first, then the mirror loaded
        except (RedisError, OSError) as error:
            follower.cancel()
            await asyncio.wait([follower], timeout=OP_TIMEOUT)
            await self._client.aclose()
            raise StoreUnavailable(f"cannot reach the shared store {self.access}: {error}") from error
        self._tasks = [
            follower,
            asyncio.create_task(self._beat(), name="store-heartbeat"),
            asyncio.create_task(self._write_in_order(), name="store-writes"),
        ]

    async def aclose(self) -> None:
        """Finish the queued operator writes (briefly), stop the tasks, leave the replica set."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OP_TIMEOUT):
                await self._writes.join()
        if self._announcing:
            _, late = await asyncio.wait(self._announcing, timeout=OP_TIMEOUT)
            for task in late:  # not left running on a connection the pool is about to close
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=OP_TIMEOUT)
        for task in self._tasks:
            task.cancel()
        _, stuck = await asyncio.wait(self._tasks, timeout=OP_TIMEOUT)
        for task in stuck:
            logger.warning("shared store: %s did not stop in time", task.get_name())
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.delete(replica_key(self.replica))
                await self._client.srem(REPLICAS, self.replica)
            await self._client.aclose()

    def close(self) -> None:
        """The synchronous half of closing (the group commit's): ``aclose`` does the rest."""

    @property
    def client(self) -> aioredis.Redis:
        """The connection pool, for the other parts that talk to the same Redis."""
        if self._client is None:
            raise RuntimeError("the shared store is not open")
        return self._client

    @property
    def reachable(self) -> bool:
        return self._down_since is None

    # Ownership.

    def owns(self, device_id: str) -> bool:
        return device_id in self._owned

    def lease(self, device_id: str) -> Lease | None:
        epoch = self._owned.get(device_id)
        return None if epoch is None else Lease(device_id, epoch)

    async def claim(self, device_id: str) -> None:
        """Make this replica the device's owner (newest wins), unless it already is; the mirror then
        holds the device's stored record. StoreUnavailable while Redis cannot be reached."""
        if device_id in self._owned:
            return
        waiting = self._claiming.get(device_id)
        if waiting is not None:
            await asyncio.shield(waiting)
            return
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._claiming[device_id] = future
        try:
            try:
                self.round_trips["claim"] += 1
                reply, copies = await self._replicated(
                    self._claim,
                    [device_key(device_id), DEVICES],
                    [self.replica, device_id, repr(self._clock()), self._max_records],
                )
            except (RedisError, OSError) as error:
                self._went_down(error)
                raise StoreUnavailable(
                    "the shared store is unreachable, so this server cannot take the device over;"
                    " reconnect later"
                ) from error
            self._came_back()
            if copies < self._wait_replicas:
                # a failover could forget this epoch and hand it out again: claim anew later
                self.unreplicated += 1
                raise StoreUnavailable(
                    f"no {self._wait_replicas} replicas of the shared store confirmed the claim within"
                    f" {self._wait_ms} ms, so this server cannot take the device over; reconnect later"
                )
            if int(reply[0]) == 0:
                raise StoreFull(
                    f"the fleet keeps the records of its limit of {self._max_records} devices and"
                    f" device_id {device_id!r} is not one of them; an operator can remove devices"
                    " (DELETE /api/devices/ID), or the servers can authenticate their devices"
                )
            epoch = int(reply[0])
            self._mirror[device_id] = _record(device_id, self._stored(device_id, reply[1:]))
            self._owned[device_id] = epoch
            self._announce("claim", {"claim": device_id, "epoch": epoch})
            self.on_claimed(device_id)
            future.set_result(epoch)
            if self._claimed_meanwhile.get(device_id, 0) > epoch:
                # a newer claim won
                asyncio.get_running_loop().call_soon(self._lease_ended, Lease(device_id, epoch))
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: the claimants that shared it re-raise their own
            raise
        finally:
            del self._claiming[device_id]
            self._claimed_meanwhile.pop(device_id, None)

    # StateStore: reads from the mirror.

    def load(self, device_id: str) -> DeviceState | None:
        mirrored = self._mirror.get(device_id)
        return None if mirrored is None else mirrored.state

    def records(self) -> list[DeviceRecord]:
        return [mirrored.record for mirrored in self._mirror.values() if mirrored.state is not None]

    def load_desired(self, device_id: str) -> int | None:
        mirrored = self._mirror.get(device_id)
        return None if mirrored is None else mirrored.record.desired_mode

    # StateStore: writes.

    def save(self, device_id: str, state: DeviceState) -> None:
        """Outside the group commit (tools, tests): saved in order with the operator's writes."""
        stamped = self._stamps([(device_id, state)])
        self._writes.put_nowait(lambda: self._save_batch([(device_id, state)], stamped))

    def save_many(self, states: Sequence[tuple[str, DeviceState]]) -> None:
        batch = list(states)
        stamped = self._stamps(batch)
        self._writes.put_nowait(lambda: self._save_batch(batch, stamped))

    def submit(
        self,
        states: Sequence[tuple[str, DeviceState]],
        done: Callable[[SaveOutcome], None],
        epochs: Mapping[str, int] | None = None,
    ) -> None:
        stamped = dict(epochs) if epochs is not None else self._stamps(states)
        task = asyncio.get_running_loop().create_task(self._save_batch(states, stamped))
        task.add_done_callback(lambda finished: done(_outcome(finished)))

    def save_tags(self, device_id: str, tags: Sequence[str]) -> None:
        value = json.dumps(list(tags))
        self._mirror_update(device_id, lambda record: replace(record, tags=tuple(tags)))
        self._queue_field(device_id, "tags", value, "")

    def set_desired(self, device_id: str, mode: int) -> None:
        self._mirror_update(device_id, lambda record: replace(record, desired_mode=mode))
        self._queue_field(device_id, "desired", str(mode), "")

    def clear_desired(self, device_id: str, mode: int) -> None:
        mirrored = self._mirror.get(device_id)
        if mirrored is not None and mirrored.record.desired_mode == mode:
            mirrored.record = replace(mirrored.record, desired_mode=None)
        self._queue_field(device_id, "desired", "", str(mode))

    # StateStore: the records themselves.

    def count(self) -> int:
        return len(self._mirror)

    def unseen_since(self, moment: float) -> list[str]:
        return [
            device_id
            for device_id, mirrored in self._mirror.items()
            if mirrored.record.last_seen is None or mirrored.record.last_seen < moment
        ]

    def touch(self, device_ids: Sequence[str], moment: float) -> None:
        """Nothing to do: the record of a device a replica holds is never removed (``_REMOVE``)."""

    def remove(
        self, device_ids: Sequence[str], unseen_since: float | None, done: Callable[[frozenset[str]], None]
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._remove_records(list(device_ids), unseen_since))
        task.add_done_callback(lambda finished: done(_removed(finished)))

    async def _remove_records(self, device_ids: list[str], unseen_since: float | None) -> frozenset[str]:
        """In scripts of a few hundred devices each, so Redis is never held up for long."""
        removed: set[str] = set()
        for start in range(0, len(device_ids), REMOVE_BATCH):
            chunk = device_ids[start : start + REMOVE_BATCH]
            keys = [device_key(device_id) for device_id in chunk] + [DEVICES, CHANGES]
            args = ["" if unseen_since is None else repr(unseen_since), HELD, *chunk, self.replica]
            try:
                self.round_trips["remove"] += 1
                reply = await self._remove(keys=keys, args=args)
            except (RedisError, OSError) as error:
                self._went_down(error)
                break
            self._came_back()
            gone = [text(device_id) for device_id in reply]
            if gone:
                self._announce("removed", {"removed": gone})
            removed.update(gone)
        self._forget(removed)
        return frozenset(removed)

    def _forget(self, device_ids: set[str]) -> None:
        """Records removed: gone from the mirror, and owned no more (without an eviction: the
        supervisor removes only records of devices it does not serve)."""
        for device_id in device_ids:
            self._mirror.pop(device_id, None)
            self._owned.pop(device_id, None)

    # Inside.

    def _stamps(self, states: Sequence[tuple[str, DeviceState]]) -> dict[str, int]:
        """The leases held now, for saves made now (outside the group commit)."""
        return {device_id: self._owned[device_id] for device_id, _ in states if device_id in self._owned}

    async def _save_batch(
        self, states: Sequence[tuple[str, DeviceState]], epochs: Mapping[str, int] | None = None
    ) -> frozenset[str]:
        """One script for the batch, each save under the lease it was made with; the saves of a
        lease this replica no longer holds are refused without asking (never sent under a newer
        one)."""
        stamped = self._stamps(states) if epochs is None else epochs
        owned = [
            (device_id, state)
            for device_id, state in states
            if device_id in stamped and self._owned.get(device_id) == stamped[device_id]
        ]
        fenced = {device_id for device_id, _ in states} - {device_id for device_id, _ in owned}
        stale = sum(1 for device_id in fenced if device_id in stamped)
        if stale:
            self.stale.drop(STALE_SAVE, stale)
        if not owned:
            return frozenset(fenced)
        keys = [device_key(device_id) for device_id, _ in owned]
        args: list[Any] = [self.replica, repr(self._clock())]
        for device_id, state in owned:
            args += [device_id, stamped[device_id], state.mode, state.next_playback_id]
        try:
            self.round_trips["save"] += 1
            refused, copies = await self._replicated(self._save, keys, args)
        except (RedisError, OSError) as error:
            self._went_down(error)
            raise
        self._came_back()
        if copies < self._wait_replicas:
            self.unreplicated += 1
            raise NotReplicated(
                f"the shared store's primary took {len(owned)} saves but {copies} of"
                f" {self._wait_replicas} replicas confirmed them within {self._wait_ms} ms: not acked"
            )
        refused_ids = {value.decode() for value in refused}
        now = self._clock()
        for device_id, state in owned:
            if device_id in refused_ids:
                self._lease_ended(Lease(device_id, stamped[device_id]))
            else:
                kept = DeviceState(mode=state.mode, next_playback_id=state.next_playback_id)
                self._mirror_state(device_id, kept, now, announce=False)
        return frozenset(fenced | refused_ids)

    async def _replicated(self, script: Any, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        """The script, then ``WAIT`` on the same connection (it waits for that connection's
        writes): the script's reply, and how many replicas hold what it wrote."""
        if not self._wait_replicas:
            return await script(keys=keys, args=args), 0
        async with self._replicating, self.client.pipeline(transaction=False) as pipe:
            await script(keys=keys, args=args, client=pipe)
            pipe.wait(self._wait_replicas, self._wait_ms)
            reply, copies = await pipe.execute()
        return reply, int(copies)

    def _queue_field(self, device_id: str, field: str, value: str, only_if: str) -> None:
        """Coalesced per device and field: a write not sent yet is replaced by a newer one, so an
        outage holds one write per field however often the operator changes it."""
        key = (device_id, field)
        waiting = self._waiting_fields.get(key)
        if waiting is not None:
            if value == "" and only_if != "" and waiting[0] == only_if:
                only_if = ""  # the value it would clear is the one never sent: clear whatever is there
            self._waiting_fields[key] = (value, only_if)
            self.fields_replaced += 1
            return
        if len(self._waiting_fields) >= MAX_WAITING_FIELDS:
            self.fields_dropped += 1
            logger.warning(
                "device %s: its %s not written, too many writes wait for the store", device_id, field
            )
            return
        self._waiting_fields[key] = (value, only_if)
        self._unwritten[device_id] = self._unwritten.get(device_id, 0) + 1

        async def write() -> None:
            sent = None
            while (waiting := self._waiting_fields[key]) != sent:  # replaced while sent: send the newer
                value, only_if = sent = waiting
                self.round_trips["operator"] += 1
                announcement = self.seal.seal("field", {"field": field, "id": device_id, "value": value})
                await self._set_field(
                    keys=[device_key(device_id), DEVICES, CHANGES],
                    args=[self.replica, device_id, field, value, only_if, announcement],
                )
            del self._waiting_fields[key]
            left = self._unwritten.pop(device_id, 1) - 1
            if left:
                self._unwritten[device_id] = left

        self._writes.put_nowait(write)

    @property
    def waiting_fields(self) -> int:
        """Operator writes waiting for Redis (one per device and field)."""
        return len(self._waiting_fields)

    async def _write_in_order(self) -> None:
        """Operator writes, one after another, each retried until Redis takes it."""
        await write_in_order(
            self._writes,
            lambda write: write(),
            failed=lambda _, error: self._went_down(error),
            written=self._came_back,
        )

    async def _beat(self) -> None:
        """This replica's heartbeat key, and the outage detector while nothing else talks to Redis."""
        assert self._client is not None
        while True:
            try:
                self.round_trips["heartbeat"] += 1
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.set(replica_key(self.replica), "1", px=REPLICA_TTL_MS)
                    pipe.sadd(REPLICAS, self.replica)
                    await pipe.execute()
                self._came_back()
            except (RedisError, OSError) as error:
                self._went_down(error)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _follow_changes(self, loaded: asyncio.Future[None]) -> None:
        """Apply what the other replicas publish; the mirror is loaded once subscribed (so nothing
        published meanwhile is missed), and again after a gap in the feed."""
        assert self._client is not None

        async def subscribed(first: bool) -> None:
            await self._load_mirror()
            if not first:
                await self._check_ownership()

        async def handle(_: str, data: bytes | str) -> None:
            if sender_of(data) == self.replica:
                return
            try:
                envelope = self.seal.open(CHANGE_KINDS, data, MAX_CHANGE_BYTES)
                self._apply_change(envelope.kind, envelope.body)
            except Refused as refused:
                self.rejections.reject("change", refused.reason, str(refused))
            except validation.Malformed as error:
                self.rejections.reject("change", MALFORMED, f"a signed change that is not one: {error}")

        await follow(
            self._client,
            (CHANGES,),
            handle,
            subscribed=subscribed,
            closed=lambda: self._closed,
            lost=self._went_down,
            ready=loaded,
        )

    def _apply_change(self, kind: str, body: object) -> None:
        """A change another replica announced (sealed, so genuine); ``Malformed`` if it is not one."""
        if kind == "claim":
            claim = validation.claim(body)
            device_id, epoch = claim.device_id, claim.epoch
            mine = self._owned.get(device_id)
            if device_id in self._claiming:
                self._claimed_meanwhile[device_id] = max(epoch, self._claimed_meanwhile.get(device_id, 0))
            if mine is not None and mine < epoch:
                self._lease_ended(Lease(device_id, mine))
            elif device_id not in self._mirror:  # a device first seen elsewhere: known here from now on
                self._mirror_state(device_id, DeviceState(), self._clock())
        elif kind == "field":
            change = validation.field_change(body)
            if change.field == "tags":
                tags = change.tags
                self._mirror_update(change.device_id, lambda record: replace(record, tags=tags))
            else:
                desired = change.desired
                self._mirror_update(change.device_id, lambda record: replace(record, desired_mode=desired))
        elif kind == "removed":
            gone = set(validation.removal(body))
            self._forget(gone)
            self.on_removed(frozenset(gone))

    async def _load_mirror(self) -> None:
        assert self._client is not None
        members = await self._client.smembers(DEVICES)
        ids = sorted(self._device_ids(members))
        mirror: dict[str, _Mirrored] = {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            async with self._client.pipeline(transaction=False) as pipe:
                for device_id in chunk:
                    pipe.hmget(device_key(device_id), "mode", "next", "tags", "desired", "seen")
                replies = await pipe.execute()
            for device_id, fields in zip(chunk, replies, strict=True):
                mirror[device_id] = _record(device_id, self._stored(device_id, fields))
        # What this replica knows better than a read begun before its awaits: the devices it owns
        # or is claiming (their claim read them, and only it writes them), and those with
        # operator writes still queued.
        for device_id in (*self._owned, *self._claiming, *self._unwritten):
            current = self._mirror.get(device_id)
            if current is not None:
                mirror[device_id] = current
        gone = self._mirror.keys() - mirror.keys()  # removed while the feed was away
        self._mirror = mirror
        if gone:
            self.on_removed(frozenset(gone))

    async def _check_ownership(self) -> None:
        """After a gap in the change feed: which of the devices this replica holds were claimed
        elsewhere meanwhile."""
        assert self._client is not None
        owned = list(self._owned.items())
        for start in range(0, len(owned), 1000):
            chunk = owned[start : start + 1000]
            async with self._client.pipeline(transaction=False) as pipe:
                for device_id, _ in chunk:
                    pipe.hmget(device_key(device_id), "epoch", "owner")
                replies = await pipe.execute()
            for (device_id, epoch), (stored_epoch, owner) in zip(chunk, replies, strict=True):
                if self._owned.get(device_id) != epoch:
                    continue  # claimed anew while this check was out: that claim read the truth
                if stored_epoch != str(epoch).encode() or owner != self.replica.encode():
                    self._lease_ended(Lease(device_id, epoch))  # a damaged record counts as another's

    def _announce(self, kind: str, body: dict[str, Any]) -> None:
        """Tell the other replicas (sealed), in the background: if it is lost (Redis went away),
        a replica that needed it learns the same from its next refused save or after its feed
        reconnects."""
        message = self.seal.seal(kind, body)

        async def publish() -> None:
            assert self._client is not None
            self.round_trips["announce"] += 1
            try:
                await self._client.publish(CHANGES, message)
            except (RedisError, OSError) as error:
                logger.debug("%s not announced: %s", kind, error)

        task = asyncio.get_running_loop().create_task(publish(), name=f"store-announce-{kind}")
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    def _stored(self, device_id: str, fields: Sequence[Any]) -> validation.StoredDevice:
        """A device's stored fields, checked; the damaged ones dropped and counted."""
        try:
            stored = validation.stored_device(fields)
        except validation.Malformed as error:
            self.rejections.reject("device-record", MALFORMED, f"device {device_id!r}: {error}")
            return validation.StoredDevice(None, None, (), None, None)
        if stored.bad:
            self.rejections.reject(
                "device-record", MALFORMED, f"device {device_id!r}: damaged {', '.join(stored.bad)} ignored"
            )
        return stored

    def _device_ids(self, members: Iterable[bytes | str]) -> list[str]:
        """The fleet's device ids as stored; one that no device could have is skipped and counted."""
        ids: list[str] = []
        for member in members:
            try:
                ids.append(validation.device_id(validation.text_of(member)))
            except validation.Malformed as error:
                self.rejections.reject("device-id", MALFORMED, str(error))
        return ids

    def _lease_ended(self, lease: Lease) -> None:
        """The lease is over; a newer one this replica holds since (a claim anew) stays."""
        held = self._owned.get(lease.device_id)
        if held is None:
            return
        if held != lease.epoch:
            self.stale.drop(STALE_ANSWER)
            logger.info(
                "device %s: the end of its older lease %s ignored (holds %d)", lease.device_id, lease, held
            )
            return
        del self._owned[lease.device_id]
        logger.info("device %s: lease %s over, another server owns it now", lease.device_id, lease)
        self.on_lease_ended(lease)

    def _mirror_state(self, device_id: str, state: DeviceState, seen: float, announce: bool = True) -> None:
        """``announce``: tell ``on_change`` (not for this replica's own saves: its view has them)."""
        mirrored = self._mirror.get(device_id)
        if mirrored is None:
            mirrored = self._mirror[device_id] = _Mirrored(DeviceRecord(device_id, state.mode), state)
        mirrored.state = state
        mirrored.record = replace(mirrored.record, mode=state.mode, last_seen=seen)
        if announce:
            self.on_change(mirrored.record)

    def _mirror_update(self, device_id: str, change: Callable[[DeviceRecord], DeviceRecord]) -> None:
        mirrored = self._mirror.get(device_id)
        if mirrored is None:
            mirrored = self._mirror[device_id] = _Mirrored(
                DeviceRecord(device_id, 0), DeviceState(mode=0, next_playback_id=1)
            )
        mirrored.record = change(mirrored.record)
        self.on_change(mirrored.record)

    def _went_down(self, error: BaseException) -> None:
        if self._down_since is None and not self._closed:
            self._down_since = time.monotonic()
            self.outages += 1
            logger.error("the shared store %s is unreachable: %s", self.access, error)
            if self._on_outage is not None:
                self._on_outage(True)

    def _came_back(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "the shared store %s is reachable again after %.1f s",
                self.access,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            if self._on_outage is not None:
                self._on_outage(False)


def _removed(finished: asyncio.Task[frozenset[str]]) -> frozenset[str]:
    """The devices a removal task removed: none if it was cancelled (the server is stopping)."""
    if finished.cancelled() or finished.exception() is not None:
        return frozenset()
    return finished.result()


def _outcome(finished: asyncio.Task[frozenset[str]]) -> SaveOutcome:
    if finished.cancelled():
        return RuntimeError("the save was cancelled (the server is stopping)")
    error = finished.exception()
    if error is not None:
        return error if isinstance(error, Exception) else RuntimeError(str(error))
    return finished.result()
