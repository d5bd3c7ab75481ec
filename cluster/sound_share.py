"""Uploaded sounds and mode assignments, the same on every replica.

An upload, a delete or an assignment made on one replica is written to Redis (the file as
uploaded, in a hash of sounds; the assignments in a hash by mode) and announced; every other
replica decodes the file itself (in the catalog's sandbox, one at a time, at its own packet
length) and applies the change to its catalog without announcing it again. A replica that
starts reads both hashes (once subscribed to the announcements, so a change made while it
reads is not missed: it is applied after the read, in order), so it plays what the fleet's
operators chose even if it was down when they chose it: the names at once, the files it
lacks in the background (decoding takes seconds each, and it serves meanwhile), each mode's
assignment once its sound is there. (It adds what it lacks; a sound deleted or re-uploaded
while it was down it learns only from the next change to that sound; a file it fetched that
the feed has changed since is not installed.)

The writes are queued and retried in order while Redis is unreachable: the replica that took
the upload has it at once, the others once Redis takes it. What waits is each sound's and each
mode's latest change (an upload replaced or deleted meanwhile leaves no copy waiting), for at
most MAX_WAITING_CHANGES of them.

Announcements are sealed (``cluster.replica_auth``) and carry the file's SHA-256: a replica
installs what it reads from the hash only if it is the file announced. Names and assignments
read from Redis are checked (``cluster.validation``); what fails is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter

import redis.asyncio as aioredis

from cluster import validation
from cluster.redis_io import Coalescing, follow, write_in_order
from cluster.rejections import MALFORMED, MISDIRECTED, Rejections
from cluster.replica_auth import MessageSeal, read_sealed, sender_of
from cluster.shared_store import PREFIX
from media.catalog import (
    AssignmentError,
    SoundCatalog,
    SoundChange,
    SoundConflict,
    SoundNameError,
    UnknownSound,
)
from media.decode import SoundFileError
from media.sandbox import DecodeBusy

logger = logging.getLogger(__name__)

SOUNDS = PREFIX + "sounds"
ASSIGNMENTS = PREFIX + "assignments"
SOUND_CHANGES = PREFIX + "sound-changes"
ANNOUNCEMENT = "sound-change"
MAX_ANNOUNCEMENT_BYTES = 4096
MAX_WAITING_CHANGES = 1000
"""Sounds and modes whose latest change may wait for Redis (one each: a newer upload of a sound
replaces the waiting file); beyond, a change is dropped and counted."""


class SoundShare:
    def __init__(
        self,
        client: aioredis.Redis,
        replica: str,
        catalog: SoundCatalog,
        *,
        seal: MessageSeal,
        rejections: Rejections,
    ) -> None:
        self._client = client
        self._seal = seal
        self._rejections = rejections
        self._replica = replica
        self._catalog = catalog
        self._loop: asyncio.AbstractEventLoop | None = None
        self.writes: Coalescing[tuple[str, str], SoundChange] = Coalescing(MAX_WAITING_CHANGES)
        """The changes made here not in Redis yet: the latest per sound and per mode."""
        self._tasks: list[asyncio.Task[None]] = []
        self._fed: Counter[str] = Counter()
        """Changes the feed brought per sound name: a file fetched before one of them is stale."""
        self._closed = False

    async def start(self) -> None:
        """Follow the fleet's changes, take what it has once subscribed (nothing published in
        between is missed), and announce the changes made here."""
        self._loop = asyncio.get_running_loop()
        taken: asyncio.Future[None] = self._loop.create_future()
        self._tasks += [asyncio.create_task(self._follow(taken), name="sound-share")]
        try:
            async with asyncio.timeout(5.0):
                await taken
        except BaseException:
            await self.aclose()
            raise
        self._catalog.on_change = self._changed_here
        self._tasks += [asyncio.create_task(self._write_in_order(), name="sound-writes")]

    async def aclose(self) -> None:
        self._closed = True
        self._catalog.on_change = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.writes.join()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    def _changed_here(self, change: SoundChange) -> None:
        """From the API's handler or its upload thread: queued on the loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._queue, change)

    def _queue(self, change: SoundChange) -> None:
        key = ("mode", str(change.mode)) if change.kind == "assigned" else ("sound", change.name)
        if not self.writes.put(key, change):
            logger.warning(
                "sound change %s %s dropped: %d changes already wait for the shared store",
                change.kind,
                change.name,
                len(self.writes),
            )

    async def _write_in_order(self) -> None:
        await write_in_order(
            self.writes,
            self._write,
            failed=lambda change, error: logger.warning(
                "sound change %s %s not shared yet: %s", change.kind, change.name, error
            ),
        )

    async def _write(self, change: SoundChange) -> None:
        digest = None if change.data is None else hashlib.sha256(change.data).hexdigest()
        announcement = self._seal.seal(
            ANNOUNCEMENT, {"kind": change.kind, "name": change.name, "mode": change.mode, "sha256": digest}
        )
        async with self._client.pipeline(transaction=True) as pipe:
            if change.kind == "added" and change.data is not None:
                pipe.hset(SOUNDS, change.name, change.data)
            elif change.kind == "removed":
                pipe.hdel(SOUNDS, change.name)
            elif change.kind == "assigned" and change.mode is not None:
                pipe.hset(ASSIGNMENTS, str(change.mode), change.name)
            pipe.publish(SOUND_CHANGES, announcement)
            await pipe.execute()

    async def _follow(self, taken: asyncio.Future[None]) -> None:
        async def subscribed(_: bool) -> None:
            await self._take_all()  # at first, and after a gap in the feed

        async def handle(_: str, data: bytes | str) -> None:
            if sender_of(data) == self._replica:
                return
            opened = read_sealed(
                self._seal,
                self._rejections,
                ANNOUNCEMENT,
                data,
                MAX_ANNOUNCEMENT_BYTES,
                validation.sound_announcement,
            )
            if opened is None:
                return
            envelope, announcement = opened
            await self._apply(envelope.sender, announcement)

        await follow(
            self._client,
            (SOUND_CHANGES,),
            handle,
            subscribed=subscribed,
            closed=lambda: self._closed,
            lost=lambda error: logger.warning("sound feed interrupted: %s", error),
            ready=taken,
        )

    async def _apply(self, sender: str, change: validation.SoundAnnouncement) -> None:
        name, kind = change.name, change.kind
        self._fed[name] += 1
        try:
            if kind == "added":
                data = await self._client.hget(SOUNDS, name)
                if not isinstance(data, bytes):
                    return  # removed again meanwhile
                if hashlib.sha256(data).hexdigest() != change.sha256:
                    self._rejections.reject(
                        "stored-sound", MISDIRECTED, f"{name!r} in Redis is not the file {sender} announced"
                    )
                    return
                await self._install(name, data)
            elif kind == "removed":
                self._catalog.remove(name, announce=False)
            elif kind == "assigned" and change.mode is not None:
                self._catalog.assign(change.mode, name, announce=False)
        except (UnknownSound, SoundConflict, AssignmentError) as error:
            logger.warning("sound change from %s not applied here: %s", sender, error)

    async def _install(self, name: str, data: bytes, fed: int | None = None) -> None:
        """``fed``: the feed's count of changes to ``name`` when ``data`` was read; if the feed has
        brought one since, ``data`` is older than what it said and is not installed."""
        try:
            sound = await self._catalog.decode(name, data, background=True)
            if fed is not None and self._fed[name] != fed:
                return
            await asyncio.to_thread(self._catalog.add, name, sound, data, False)
        except DecodeBusy:
            pass  # stopping
        except (SoundFileError, SoundNameError, SoundConflict, ValueError) as error:
            logger.warning("shared sound %s not installed here: %s", name, error)

    async def _take_all(self) -> None:
        """The fleet's sounds this replica lacks are fetched and decoded in the background; the
        assignments of those it holds apply now, the others' once their sounds are in."""
        missing: list[str] = []
        for raw_name in sorted(await self._client.hkeys(SOUNDS)):
            try:
                name = validation.stored_sound_name(raw_name)
            except validation.Malformed as error:
                self._rejections.reject("stored-sound", MALFORMED, str(error))
                continue
            if not self._catalog.holds(name):
                missing.append(name)
        await self._take_assignments(set(missing))
        if missing:
            self._tasks.append(asyncio.create_task(self._catch_up(missing), name="sound-catch-up"))

    async def _catch_up(self, names: list[str]) -> None:
        try:
            for name in names:
                fed = self._fed[name]
                data = None if self._catalog.holds(name) else await self._client.hget(SOUNDS, name)
                if isinstance(data, bytes):
                    await self._install(name, data, fed)
            await self._take_assignments(set())
        except (aioredis.RedisError, OSError) as error:
            logger.warning("the fleet's sounds are not all here yet (the next start retries): %s", error)

    async def _take_assignments(self, coming: set[str]) -> None:
        """Apply the fleet's assignments, except to sounds still `coming` (applied once they are in)."""
        assignments = await self._client.hgetall(ASSIGNMENTS)
        current = self._catalog.assignments()
        for raw_mode, raw_name in sorted(assignments.items()):
            try:
                mode, name = validation.assignment(raw_mode, raw_name)
            except validation.Malformed as error:
                self._rejections.reject("assignment", MALFORMED, str(error))
                continue
            if current.get(mode) != name and name not in coming:
                try:
                    self._catalog.assign(mode, name, announce=False)
                except AssignmentError as error:
                    logger.warning(
                        "shared assignment of mode %d to %s not applied here: %s", mode, name, error
                    )
