"""The named sounds the server plays, changed at run time: the library's sounds plus uploads, and which
sound each mode plays. Uploads and assignments are kept in a shelf directory across restarts.

Reads (for_mode, named, entries) may come from any thread: they see one immutable snapshot, replaced
whole on every change. Changes (add, remove, assign) are serialised by a lock; decoding, the slow
part, happens before them in a sandboxed child process (media.sandbox).

Each upload is kept twice on the shelf: the file as uploaded (`<name>.sound`) and its encoded packets
(`<name>.packets`, media.stored_packets). A restart loads the packets, which takes milliseconds; an
upload whose packets are missing, damaged or of another frame duration waits, unavailable, until
restore_waiting() encodes it again once the server is serving.

Several processes may share one shelf (``--workers``): each change takes a lock on the shelf
(flock on its directory) and first reads what the others stored, so no worker writes the assignments
over another's; ``follow_shelf`` takes in the others' changes (``cluster.shelf_follower`` calls it
when ``shelf_signature`` changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from media.decode import DEFAULT_MAX_SECONDS, SoundFileError
from media.library import BUILT_IN_PREFIX, EncodedSound, SoundLibrary
from media.sandbox import DecodeBusy, DecodeJob, DecodeSandbox
from media.stored_packets import StoredPacketsError, pack, unpack

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_UPLOAD_SUFFIX = ".sound"
"""Stored uploads are `<name>.sound`: the format is found from the bytes, so no extension is kept."""
_PACKETS_SUFFIX = ".packets"
"""Beside each, `<name>.packets`: the upload encoded, loaded at start instead of decoding it again."""
_TEMP_SUFFIX = ".tmp"
_ASSIGNMENTS = "assignments.json"


class SoundSource(enum.Enum):
    BUILT_IN = "built-in"
    SOUNDS_DIR = "sounds-dir"
    UPLOADED = "uploaded"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    source: SoundSource
    duration: float
    """Seconds of the source sound."""
    modes: tuple[int, ...]
    """The modes that play it, ascending."""


class SoundNameError(ValueError):
    """A name an upload may not have; the message says which rule it breaks."""


class SoundConflict(ValueError):
    """The change would touch a sound the operator may not change this way (built-in, sounds-dir, or
    assigned to a mode)."""


class UnknownSound(KeyError):
    """No sound has this name."""

    def __str__(self) -> str:
        # KeyError's own str() is the repr of its argument, quotes and all.
        return str(self.args[0]) if self.args else "unknown sound"


class AssignmentError(ValueError):
    """A mode that does not exist, or a sound that does not, given to assign()."""


def check_name(name: str) -> None:
    """Refuse a name that is not 1..64 of a-z A-Z 0-9 . _ -, is `.` or `..` (it names a file on the
    shelf) or claims the built-in prefix."""
    if not _NAME.fullmatch(name):
        raise SoundNameError(f"{name!r} is not a sound name: use 1 to 64 of the characters a-z A-Z 0-9 . _ -")
    if name in (".", ".."):
        raise SoundNameError(f"{name!r} is not a sound name")
    if name.startswith(BUILT_IN_PREFIX):
        raise SoundNameError(f"{name!r} is not a sound name: names starting {BUILT_IN_PREFIX!r} are built-in")


def decode_upload(
    name: str, data: bytes, frame_ms: int, max_seconds: float = DEFAULT_MAX_SECONDS
) -> EncodedSound:
    """Check the name, decode the file and Opus-encode it once in `frame_ms` packets, in a sandboxed
    child process, blocking until it is done (SoundCatalog.decode is the server's way, on its loop).

    Raises SoundNameError or SoundFileError (whose message names the problem).
    """
    check_name(name)
    (result,) = DecodeSandbox().encode_blocking(
        [DecodeJob(name, data, frame_ms, f"sound {name!r}", max_seconds)]
    )
    if isinstance(result, SoundFileError):
        raise result
    return result


@dataclass(frozen=True, slots=True)
class SoundChange:
    """What an operator changed in the catalog, for replicas that share it (``cluster.sound_share``)."""

    kind: str
    """"added", "removed" or "assigned"."""
    name: str
    mode: int | None = None
    data: bytes | None = None
    """The file as uploaded, for "added"."""


@dataclass(frozen=True)
class _Snapshot:
    uploads: Mapping[str, EncodedSound]
    by_mode: tuple[EncodedSound, ...]
    waiting: frozenset[str] = frozenset()
    """Stored uploads to be encoded again (their packets missing, damaged or of another frame_ms)."""
    awaited: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    """Modes assigned a waiting upload, which they play once it is back."""


class SoundCatalog:
    """Drop-in for a SoundLibrary where actors play sounds (modes, frame_ms, silence_packet, for_mode,
    named), plus what the operator API changes."""

    def __init__(
        self, library: SoundLibrary, shelf_dir: Path | None, sandbox: DecodeSandbox | None = None
    ) -> None:
        self.library = library
        self.sandbox = sandbox or DecodeSandbox()
        """Where uploads are decoded: child processes with limits, a few at a time."""
        self._fixed = {sound.name: sound for sound in library.sounds}
        self._shelf = shelf_dir
        self._lock = threading.Lock()
        self.on_change: Callable[[SoundChange], None] | None = None
        """Told of each change made here (not of those ``announce=False`` applies from elsewhere)."""
        self._state = _Snapshot(MappingProxyType({}), tuple(library.sounds))
        self._packets_seen: dict[str, tuple[int, int]] = {}
        """Each upload's packets file as last loaded or stored here (its size and mtime): one another
        process replaced is loaded again."""
        if shelf_dir is not None:
            self._uploads_dir.mkdir(parents=True, exist_ok=True)
            uploads, waiting = self._restore_uploads()
            by_mode = list(library.sounds)
            awaited = self._restore_assignments(uploads, waiting, by_mode)
            self._state = _Snapshot(
                MappingProxyType(uploads), tuple(by_mode), frozenset(waiting), MappingProxyType(awaited)
            )
            for name in uploads:
                self._packets_seen[name] = self._packets_stamp(name) or (0, 0)

    # What actors read, from any thread.

    @property
    def modes(self) -> int:
        return self.library.modes

    @property
    def frame_ms(self) -> int:
        return self.library.frame_ms

    @property
    def silence_packet(self) -> bytes:
        return self.library.silence_packet

    def for_mode(self, mode: int) -> EncodedSound:
        """The sound the mode is assigned (its library sound unless the operator chose another)."""
        if not 0 <= mode < self.modes:
            # Same check and message as the library: a negative mode must not index from the end.
            return self.library.for_mode(mode)
        return self._state.by_mode[mode]

    def named(self, name: str) -> EncodedSound | None:
        return self._fixed.get(name) or self._state.uploads.get(name)

    # What the operator API reads.

    def entries(self) -> list[CatalogEntry]:
        """Every sound: the library's in mode order, then the uploads by name."""
        state = self._state
        sounds = [*self.library.sounds, *(state.uploads[name] for name in sorted(state.uploads))]
        return [
            CatalogEntry(
                sound.name, self._source(sound.name), sound.duration, self._modes_of(state, sound.name)
            )
            for sound in sounds
        ]

    def assignments(self) -> dict[int, str]:
        """Every mode and the name of the sound it plays."""
        return {mode: sound.name for mode, sound in enumerate(self._state.by_mode)}

    def modes_of(self, name: str) -> list[int]:
        """The modes that play the sound called `name` (none for an unknown name)."""
        return list(self._modes_of(self._state, name))

    @property
    def waiting(self) -> list[str]:
        """Stored uploads not playable yet: restore_waiting() encodes them again."""
        return sorted(self._state.waiting)

    def holds(self, name: str) -> bool:
        """Whether a sound of this name is here, playable or waiting to be encoded again."""
        return self.named(name) is not None or name in self._state.waiting

    def check_upload_name(self, name: str) -> None:
        """Whether an upload may take this name, checked before the upload is decoded.

        SoundConflict for a built-in or sounds-dir sound's name (the server answers 409), SoundNameError
        for a name no upload may have (422). Thread-safe: the library's names never change.
        """
        if name in self._fixed:
            raise SoundConflict(f"{name!r} is a {self._source(name).value} sound; upload under another name")
        check_name(name)

    # Decoding, in the sandbox.

    async def decode(self, name: str, data: bytes, *, background: bool = False) -> EncodedSound:
        """Check the name, then decode and encode the file at this catalog's frame_ms in a child process.

        SoundNameError, SoundConflict or SoundFileError for a name or file refused; DecodeBusy when no
        turn came soon enough (background work waits its turn instead).
        """
        self.check_upload_name(name)
        job = DecodeJob(name, data, self.frame_ms, f"sound {name!r}")
        return await self.sandbox.encode(job, background=background)

    async def restore_waiting(self) -> None:
        """Encode again, one at a time, each stored upload whose packets could not be used, and make it
        playable (with the modes assigned it). Run once the server serves: it may take minutes."""
        for name in self.waiting:
            try:
                data = await asyncio.to_thread(self._upload_path(name).read_bytes)
                sound = await self.decode(name, data, background=True)
            except DecodeBusy:
                return  # stopping
            except (SoundNameError, SoundConflict, SoundFileError, OSError) as exc:
                logger.warning("skipping stored sound %s: %s", self._upload_path(name), exc)
                self._give_up_waiting(name)
                continue
            if await asyncio.to_thread(self._install_restored, name, sound, len(data)):
                logger.info("restored sound %s (%.2f s, encoded again)", name, sound.duration)

    def close(self) -> None:
        """Stop decoding: running children are killed and new decodes refused (the server is stopping)."""
        self.sandbox.close()

    # Changes, serialised by the lock.

    def add(self, name: str, sound: EncodedSound, data: bytes, announce: bool = True) -> bool:
        """Install `sound` (from decode) under `name`, replacing an upload of that name, and keep `data`,
        the file as uploaded, with the packets. True if the name is new.

        A playback of the replaced sound plays on: it holds the old EncodedSound, which nothing changes.
        """
        self.check_upload_name(name)
        if sound.name != name:
            raise ValueError(f"the sound is named {sound.name!r}, not {name!r}")
        if sound.frame_ms != self.frame_ms:
            raise ValueError(
                f"the sound is in {sound.frame_ms} ms packets, the catalog's in {self.frame_ms} ms"
            )
        with self._lock, self._shelf_locked():
            state = self._state = self._read_shelf(self._state)
            if self._shelf is not None:
                self._store(name, sound, data)
            replaced = state.uploads.get(name)
            by_mode = tuple(sound if playing is replaced else playing for playing in state.by_mode)
            self._state = self._without_waiting(
                _Snapshot(
                    MappingProxyType({**state.uploads, name: sound}), by_mode, state.waiting, state.awaited
                ),
                name,
                sound,
            )
        # The API logs the upload with who made it; this line is for debugging the catalog alone.
        logger.debug("sound %s %s (%.2f s)", name, "replaced" if replaced else "added", sound.duration)
        self._announce(announce, SoundChange("added", name, data=data))
        return replaced is None

    def remove(self, name: str, announce: bool = True) -> None:
        """Forget an uploaded sound and its stored files. UnknownSound if there is none of that name;
        SoundConflict for a built-in or sounds-dir sound, or one a mode plays (or will, once restored)."""
        if name in self._fixed:
            raise SoundConflict(f"{name!r} is a {self._source(name).value} sound; it cannot be deleted")
        with self._lock, self._shelf_locked():
            state = self._state = self._read_shelf(self._state)
            if name not in state.uploads and name not in state.waiting:
                raise UnknownSound(f"no sound is named {name!r}")
            modes = self._modes_of(state, name)
            if modes:
                raise SoundConflict(f"{name!r} is {_assigned_to(modes)}; assign another sound first")
            if self._shelf is not None:
                # The file first: packets left alone by a crash are swept at start, a file would be restored.
                self._upload_path(name).unlink(missing_ok=True)
                self._packets_path(name).unlink(missing_ok=True)
            uploads = {key: sound for key, sound in state.uploads.items() if key != name}
            self._state = _Snapshot(
                MappingProxyType(uploads), state.by_mode, state.waiting - {name}, state.awaited
            )
        logger.info("sound %s deleted", name)
        self._announce(announce, SoundChange("removed", name))

    def assign(self, mode: int, name: str, announce: bool = True) -> None:
        """Make `mode` play the sound called `name` from its next Play on; kept across restarts. A sound
        waiting to be encoded again is played once it is back."""
        if not 0 <= mode < self.modes:
            raise AssignmentError(f"mode {mode} does not exist: modes are 0..{self.modes - 1}")
        with self._lock, self._shelf_locked():
            state = self._state = self._read_shelf(self._state)
            sound = self.named(name)
            awaited = {key: value for key, value in state.awaited.items() if key != mode}
            if sound is None and name in state.waiting:
                awaited[mode] = name
                by_mode = state.by_mode
            elif sound is None:
                raise AssignmentError(f"no sound is named {name!r}")
            else:
                by_mode = tuple(
                    sound if index == mode else playing for index, playing in enumerate(state.by_mode)
                )
            new_state = _Snapshot(state.uploads, by_mode, state.waiting, MappingProxyType(awaited))
            if self._shelf is not None:
                self._save_assignments(new_state)
            self._state = new_state
        logger.info("mode %d plays %s%s", mode, name, "" if sound is not None else " once it is restored")
        self._announce(announce, SoundChange("assigned", name, mode=mode))

    # Helpers.

    def _announce(self, announce: bool, change: SoundChange) -> None:
        if announce and self.on_change is not None:
            self.on_change(change)

    def _source(self, name: str) -> SoundSource:
        if name not in self._fixed:
            return SoundSource.UPLOADED
        # Built-in names are the only ones with this prefix: sounds-dir names start with a digit.
        return SoundSource.BUILT_IN if name.startswith(BUILT_IN_PREFIX) else SoundSource.SOUNDS_DIR

    @staticmethod
    def _modes_of(state: _Snapshot, name: str) -> tuple[int, ...]:
        return tuple(
            mode
            for mode, sound in enumerate(state.by_mode)
            if sound.name == name or state.awaited.get(mode) == name
        )

    @property
    def _uploads_dir(self) -> Path:
        assert self._shelf is not None
        return self._shelf / "uploads"

    def _upload_path(self, name: str) -> Path:
        return self._uploads_dir / f"{name}{_UPLOAD_SUFFIX}"

    def _packets_path(self, name: str) -> Path:
        return self._uploads_dir / f"{name}{_PACKETS_SUFFIX}"

    def _store(self, name: str, sound: EncodedSound, data: bytes) -> None:
        """The file, then its packets; the old packets go first, so a crash between the writes leaves
        a file without packets (encoded again at start), never a file with another file's packets."""
        self._packets_path(name).unlink(missing_ok=True)
        _write_atomically(self._upload_path(name), data)
        _write_atomically(self._packets_path(name), pack(sound, len(data)))
        self._packets_seen[name] = self._packets_stamp(name) or (0, 0)

    # Other processes sharing the shelf.

    def shelf_signature(self) -> tuple[tuple[str, int, int], ...]:
        """Changes whenever a process sharing the shelf stores or deletes something there: the names,
        sizes and times of its files (directory entries only, no file is read)."""
        if self._shelf is None:
            return ()
        entries: list[tuple[str, int, int]] = []
        for directory in (self._shelf, self._uploads_dir):
            with os.scandir(directory) as scan:
                for entry in scan:
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    stat = entry.stat()
                    entries.append((f"{directory.name}/{entry.name}", stat.st_size, stat.st_mtime_ns))
        return tuple(sorted(entries))

    def follow_shelf(self) -> None:
        """Take in what other processes stored on the shelf: uploads added, replaced or deleted, and
        the modes' assignments. An upload whose packets are not stored yet is taken next time."""
        if self._shelf is None:
            return
        with self._lock, self._shelf_locked():
            self._state = self._read_shelf(self._state)

    @contextlib.contextmanager
    def _shelf_locked(self) -> Iterator[None]:
        """Held across reading the shelf and writing a change to it, by every process sharing it."""
        if self._shelf is None:
            yield
            return
        directory = os.open(self._shelf, os.O_RDONLY)  # the shelf directory itself: no lock file
        try:
            fcntl.flock(directory, fcntl.LOCK_EX)
            yield
        finally:
            os.close(directory)  # releases the lock

    def _packets_stamp(self, name: str) -> tuple[int, int] | None:
        try:
            stat = self._packets_path(name).stat()
        except FileNotFoundError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def _read_shelf(self, state: _Snapshot) -> _Snapshot:
        """``state`` as the shelf has it now (the lock held): each upload stored, with its packets
        loaded if another process stored them since, and the assignments as stored."""
        if self._shelf is None:
            return state
        stored = {
            path.name.removesuffix(_UPLOAD_SUFFIX): path
            for path in self._uploads_dir.iterdir()
            if path.name.endswith(_UPLOAD_SUFFIX) and not path.name.startswith(".")
        }
        uploads = {name: sound for name, sound in state.uploads.items() if name in stored}
        for name, path in stored.items():
            stamp = self._packets_stamp(name)
            if stamp is None or (name in uploads and self._packets_seen.get(name) == stamp):
                continue
            try:
                self.check_upload_name(name)
                uploads[name] = self._load_packets(name, path)
            except (SoundNameError, SoundConflict, OSError, StoredPacketsError):
                continue  # being written by another process: taken once whole
            self._packets_seen[name] = stamp
        waiting = {name for name in state.waiting if name in stored and name not in uploads}
        if (
            uploads == dict(state.uploads)
            and waiting == state.waiting
            and not self._assignments_changed(state)
        ):
            return state
        by_mode = list(self.library.sounds)
        awaited = self._restore_assignments(uploads, waiting, by_mode)
        return _Snapshot(
            MappingProxyType(uploads), tuple(by_mode), frozenset(waiting), MappingProxyType(awaited)
        )

    def _assignments_changed(self, state: _Snapshot) -> bool:
        """Whether the stored assignments differ from ``state``'s (another process assigned a mode)."""
        assert self._shelf is not None
        try:
            stored = json.loads((self._shelf / _ASSIGNMENTS).read_text())["modes"]
        except FileNotFoundError:
            stored = {}
        except (OSError, ValueError, TypeError, KeyError):
            return False  # unreadable: what this process has stays
        return bool(stored != self._assignments_of(state))

    def _assignments_of(self, state: _Snapshot) -> dict[str, str]:
        changed = {
            str(mode): sound.name
            for mode, sound in enumerate(state.by_mode)
            if sound is not self.library.sounds[mode]
        }
        changed.update({str(mode): name for mode, name in state.awaited.items()})
        return changed

    @staticmethod
    def _without_waiting(state: _Snapshot, name: str, sound: EncodedSound) -> _Snapshot:
        """`state` with `name` playable as `sound`: no longer waiting, and the modes awaiting it play it."""
        awaiting = [mode for mode, awaited in state.awaited.items() if awaited == name]
        if name not in state.waiting and not awaiting:
            return state
        by_mode = tuple(sound if mode in awaiting else playing for mode, playing in enumerate(state.by_mode))
        others = {mode: sound_name for mode, sound_name in state.awaited.items() if sound_name != name}
        return _Snapshot(state.uploads, by_mode, state.waiting - {name}, MappingProxyType(others))

    def _install_restored(self, name: str, sound: EncodedSound, source_bytes: int) -> bool:
        """Make a waiting upload playable and store its packets; False if it stopped waiting meanwhile
        (replaced by a new upload or deleted)."""
        with self._lock:
            state = self._state
            if name not in state.waiting:
                return False
            try:
                _write_atomically(self._packets_path(name), pack(sound, source_bytes))
            except OSError as exc:
                logger.warning("sound %s restored, but its packets could not be stored: %s", name, exc)
            uploads = MappingProxyType({**state.uploads, name: sound})
            restored = self._without_waiting(
                _Snapshot(uploads, state.by_mode, state.waiting, state.awaited), name, sound
            )
            self._state = restored
        return True

    def _give_up_waiting(self, name: str) -> None:
        """A waiting upload that cannot be encoded: its modes keep what they play now (logged)."""
        with self._lock:
            state = self._state
            for mode, sound_name in sorted(state.awaited.items()):
                if sound_name == name:
                    logger.warning(
                        "skipping the stored assignment of mode %d to %r: no such sound now", mode, name
                    )
            others = {mode: sound_name for mode, sound_name in state.awaited.items() if sound_name != name}
            self._state = _Snapshot(
                state.uploads, state.by_mode, state.waiting - {name}, MappingProxyType(others)
            )

    def _save_assignments(self, state: _Snapshot) -> None:
        """Only the modes that differ from the library are kept, so a mode never reassigned follows the
        library (a new --sounds-dir file, say) after a restart."""
        assert self._shelf is not None
        text = json.dumps({"modes": self._assignments_of(state)}, indent=2, sort_keys=True) + "\n"
        _write_atomically(self._shelf / _ASSIGNMENTS, text.encode())

    def _restore_uploads(self) -> tuple[dict[str, EncodedSound], set[str]]:
        """Load every stored upload's packets; one without usable packets waits to be encoded again, one
        that may not be an upload (now a sounds-dir name, say) is skipped."""
        uploads: dict[str, EncodedSound] = {}
        waiting: set[str] = set()
        for path in sorted(self._uploads_dir.iterdir()):
            if path.name.endswith(_TEMP_SUFFIX):
                # A write cut short by a crash; the upload it was for was never acknowledged.
                logger.info("removing %s, an unfinished upload", path)
                path.unlink(missing_ok=True)
                continue
            if path.name.endswith(_PACKETS_SUFFIX) and path.is_file():
                if not self._upload_path(path.name.removesuffix(_PACKETS_SUFFIX)).exists():
                    logger.info("removing %s, the packets of a deleted upload", path)
                    path.unlink(missing_ok=True)
                continue
            name = path.name.removesuffix(_UPLOAD_SUFFIX)
            if name == path.name or not path.is_file():
                logger.warning("ignoring %s: not a stored sound (<name>%s)", path, _UPLOAD_SUFFIX)
                continue
            try:
                self.check_upload_name(name)
            except (SoundNameError, SoundConflict) as exc:
                logger.warning("skipping stored sound %s: %s", path, exc)
                continue
            try:
                uploads[name] = self._load_packets(name, path)
            except (OSError, StoredPacketsError) as exc:
                logger.warning("stored sound %s: %s; it is encoded again once the server serves", name, exc)
                waiting.add(name)
                continue
            logger.info("restored sound %s (%.2f s)", name, uploads[name].duration)
        return uploads, waiting

    def _load_packets(self, name: str, upload: Path) -> EncodedSound:
        """The stored packets of `upload`, if they are whole, its own and at this catalog's frame_ms."""
        path = self._packets_path(name)
        try:
            stored = unpack(path.read_bytes())
        except FileNotFoundError:
            raise StoredPacketsError("no stored packets") from None
        except StoredPacketsError as exc:
            raise StoredPacketsError(f"stored packets unusable: {exc}") from None
        if stored.sound.name != name or stored.source_bytes != upload.stat().st_size:
            raise StoredPacketsError("the stored packets are of another file")
        if stored.sound.frame_ms != self.frame_ms:
            raise StoredPacketsError(
                f"stored in {stored.sound.frame_ms} ms packets, this server uses {self.frame_ms} ms"
            )
        return stored.sound

    def _restore_assignments(
        self, uploads: Mapping[str, EncodedSound], waiting: set[str], by_mode: list[EncodedSound]
    ) -> dict[int, str]:
        """Give back each stored mode its sound (or await it, if it waits to be encoded again); an
        assignment to a mode or sound now gone is skipped."""
        assert self._shelf is not None
        awaited: dict[int, str] = {}
        path = self._shelf / _ASSIGNMENTS
        try:
            stored = json.loads(path.read_text())["modes"]
            if not isinstance(stored, dict):
                raise TypeError("modes is not an object")
        except FileNotFoundError:
            return awaited
        except (OSError, ValueError, TypeError, KeyError) as exc:
            logger.warning("ignoring the mode assignments in %s, unreadable: %s", path, exc)
            return awaited
        for key, name in sorted(stored.items()):
            mode = int(key) if isinstance(key, str) and key.isdecimal() else -1
            sound = (self._fixed.get(name) or uploads.get(name)) if isinstance(name, str) else None
            if not 0 <= mode < len(by_mode):
                logger.warning(
                    "skipping the stored assignment of mode %s to %r: modes are 0..%d",
                    key,
                    name,
                    len(by_mode) - 1,
                )
            elif sound is not None:
                by_mode[mode] = sound
                logger.info("mode %d plays %s (assigned)", mode, name)
            elif isinstance(name, str) and name in waiting:
                awaited[mode] = name
                logger.info("mode %d plays %s (assigned) once it is encoded again", mode, name)
            else:
                logger.warning(
                    "skipping the stored assignment of mode %d to %r: no such sound now", mode, name
                )
        return awaited


def _assigned_to(modes: tuple[int, ...]) -> str:
    if len(modes) == 1:
        return f"assigned to mode {modes[0]}"
    return "assigned to modes " + ", ".join(str(mode) for mode in modes)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a file so that after a crash it holds the old bytes or the new ones, never a mix."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut only once its directory is synced
    finally:
        os.close(directory)
