"""Decoding untrusted sound files in child processes with limits, a few at a time.

A file is decoded and Opus-encoded by `media.decode_worker` in its own process: an FFmpeg bug
or a decompression bomb costs that child (its address space, CPU time and wall time are
capped), never the server's memory or its event loop. No thread pool is involved: the server
waits on pipes, and a stop kills the children, so nothing a stop must wait for runs long.

At most `concurrency` children run at once. An upload waits `queue_seconds` for a turn and is
otherwise told to come back (DecodeBusy); background work (sounds restored after a restart,
sounds shared by other replicas) waits as long as it takes, one at a time, so it never takes
every turn from operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from media.decode import DEFAULT_MAX_SECONDS, SoundFileError, open_sound_file
from media.decode_worker import OUT_OF_MEMORY, REFUSED
from media.sound import EncodedSound
from media.stored_packets import StoredPacketsError, unpack

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_BOOT = (
    f"import sys; sys.path.insert(0, {str(_PROJECT_ROOT)!r}); "
    "from media.decode_worker import main; sys.exit(main())"
)
"""The child runs isolated (-I: no environment variables, no user site, no current directory on its
path) and finds this very checkout or installation."""

_STDERR_KEPT = 2048
"""The tail of a child's stderr kept for the log when it fails unexpectedly."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    memory_bytes: int = 256 * 1024 * 1024
    """Address space a child may add to what it has once loaded: a 15-minute sound needs about 100 MB."""
    cpu_seconds: int = 30
    """CPU time a child may use: a 15-minute sound takes about 5 s here."""
    wall_seconds: float = 45.0
    """Time from start to answer, waiting included (a slow disk, a starved core)."""
    concurrency: int = 2
    """Children at once."""
    queue_seconds: float = 2.0
    """How long an upload waits for a turn before it is told to come back."""
    retry_after_seconds: int = 5
    """What a turned-away upload is told (HTTP Retry-After)."""
    max_output_bytes: int = 64 * 1024 * 1024
    """The most a child may answer: 15 minutes of Opus in 10 ms packets is about 7 MB."""


@dataclass(frozen=True, slots=True)
class DecodeJob:
    name: str
    source: bytes | Path
    """The file's bytes (an upload), or its path (a sounds-dir file, which the child reads in place)."""
    frame_ms: int
    subject: str
    """What refusal messages call the file: `sound 'bell'`, `sound file /sounds/3.wav`."""
    max_seconds: float = DEFAULT_MAX_SECONDS


class DecodeBusy(Exception):
    """No turn to decode now (every child is busy, or the server is stopping); try again later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DecodeSandbox:
    """Turns sound files into EncodedSounds in limited child processes; see the module's docstring."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._children_lock = threading.Lock()
        self._killed: set[int] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turns: asyncio.Semaphore | None = None
        self._background: asyncio.Lock | None = None

    @property
    def running(self) -> list[int]:
        """The process ids of the children decoding now."""
        with self._children_lock:
            return list(self._children)

    async def encode(self, job: DecodeJob, *, background: bool = False) -> EncodedSound:
        """Decode and encode one file in a child; SoundFileError says why a file is refused.

        DecodeBusy when no turn came within `queue_seconds` (never for background work) or the sandbox
        is closed.
        """
        turns, background_turn = self._turns_here()
        if background:
            async with background_turn, turns:
                return await self._run(job)
        try:
            async with asyncio.timeout(self.limits.queue_seconds):
                await turns.acquire()
        except TimeoutError:
            raise DecodeBusy(
                f"{self.limits.concurrency} sounds are being decoded already; try again shortly",
                self.limits.retry_after_seconds,
            ) from None
        try:
            return await self._run(job)
        finally:
            turns.release()

    def encode_blocking(self, jobs: Sequence[DecodeJob]) -> list[EncodedSound | SoundFileError]:
        """encode() for code that is not async (start-up, the command line): `concurrency` at a time,
        each job's sound or the SoundFileError refusing it, in order. Safe from inside a running loop:
        the children are waited for on a loop of their own, in a thread of its own."""

        async def all_jobs() -> list[EncodedSound | SoundFileError]:
            turns = asyncio.Semaphore(self.limits.concurrency)

            async def one(job: DecodeJob) -> EncodedSound | SoundFileError:
                async with turns:
                    try:
                        return await self._run(job)
                    except SoundFileError as refusal:
                        return refusal

            return list(await asyncio.gather(*(one(job) for job in jobs)))

        return _in_a_thread_of_its_own(all_jobs)

    def close(self) -> None:
        """Refuse new work and kill every child now: a stopping server waits for none of them."""
        self._closed = True
        with self._children_lock:
            children = list(self._children.items())
            self._killed.update(pid for pid, _ in children)
        for pid, child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if children:
            logger.info("stopped %d sound decoding process(es)", len(children))

    def _turns_here(self) -> tuple[asyncio.Semaphore, asyncio.Lock]:
        """The turn semaphores of the loop serving the API (made on first use, on that loop)."""
        loop = asyncio.get_running_loop()
        if self._turns is None or self._background is None or self._loop is not loop:
            self._loop = loop
            self._turns = asyncio.Semaphore(self.limits.concurrency)
            self._background = asyncio.Lock()
        return self._turns, self._background

    async def _run(self, job: DecodeJob) -> EncodedSound:
        if self._closed:
            raise DecodeBusy("the server is stopping", self.limits.retry_after_seconds)
        if isinstance(job.source, Path):
            with open_sound_file(job.source) as file:
                return await self._run_child(job, file, os.fstat(file.fileno()).st_size)
        return await self._run_child(job, asyncio.subprocess.PIPE, len(job.source))

    async def _run_child(self, job: DecodeJob, stdin: BinaryIO | int, source_bytes: int) -> EncodedSound:
        """One child: started, fed (unless stdin is the file itself), answered, and gone."""
        limits = self.limits
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            _BOOT,
            "--name",
            job.name,
            "--subject",
            job.subject,
            "--frame-ms",
            str(job.frame_ms),
            "--max-seconds",
            repr(job.max_seconds),
            "--memory-bytes",
            str(limits.memory_bytes),
            "--cpu-seconds",
            str(limits.cpu_seconds),
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd="/",
            env=_child_environment(),
        )
        with self._children_lock:
            self._children[child.pid] = child
            if self._closed:  # closed while it started
                self._killed.add(child.pid)
                child.kill()
        outcome: tuple[int, bytes, bytes] | SoundFileError
        try:
            try:
                outcome = await self._answer(child, job)
            except SoundFileError as refusal:
                outcome = refusal
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
            with self._children_lock:
                self._children.pop(child.pid, None)
                killed = child.pid in self._killed
                self._killed.discard(child.pid)
        if killed:
            raise DecodeBusy("the server is stopping", limits.retry_after_seconds)
        if isinstance(outcome, SoundFileError):
            raise outcome
        return self._outcome(job, source_bytes, *outcome)

    async def _answer(self, child: asyncio.subprocess.Process, job: DecodeJob) -> tuple[int, bytes, bytes]:
        """The child's exit status, stdout and the tail of its stderr, within the wall-time limit."""
        limits = self.limits
        try:
            async with asyncio.timeout(limits.wall_seconds):
                _, output, errors = await asyncio.gather(
                    _feed(child, job.source),
                    _read_at_most(child.stdout, limits.max_output_bytes),
                    _read_tail(child.stderr, _STDERR_KEPT),
                )
                return await child.wait(), output, errors
        except TimeoutError:
            raise SoundFileError(
                f"{job.subject}: took longer than {limits.wall_seconds:g} s to decode"
            ) from None
        except _TooMuchOutput:
            raise SoundFileError(f"{job.subject}: the decoder answered more than a sound can be") from None

    def _outcome(
        self, job: DecodeJob, source_bytes: int, status: int, output: bytes, errors: bytes
    ) -> EncodedSound:
        """The sound a child answered, or the SoundFileError that explains its exit."""
        limits = self.limits
        if status == REFUSED:
            raise SoundFileError(output.decode("utf-8", "replace"))
        if status == OUT_OF_MEMORY:
            raise SoundFileError(
                f"{job.subject}: exceeded the memory limit of {limits.memory_bytes // 2**20} MB while decoding"
            )
        if status in (-signal.SIGXCPU, -signal.SIGKILL):
            raise SoundFileError(
                f"{job.subject}: used more than the {limits.cpu_seconds} s of CPU time allowed for decoding"
            )
        if status != 0:
            how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
            logger.warning(
                "decoding %s failed (%s): %s", job.subject, how, errors.decode("utf-8", "replace").strip()
            )
            raise SoundFileError(f"{job.subject}: the decoder failed on it ({how})")
        try:
            stored = unpack(output)
        except StoredPacketsError as error:
            raise SoundFileError(f"{job.subject}: the decoder's answer is damaged ({error})") from None
        sound = stored.sound
        if sound.name != job.name or sound.frame_ms != job.frame_ms or stored.source_bytes != source_bytes:
            raise SoundFileError(f"{job.subject}: the decoder answered for another file")
        return sound


class _TooMuchOutput(Exception):
    pass


async def _feed(child: asyncio.subprocess.Process, source: bytes | Path) -> None:
    """Write the file to the child's stdin and close it; a child that stops reading has answered. (A
    file on disk is the child's stdin itself.)"""
    stdin = child.stdin
    if stdin is None or not isinstance(source, bytes):
        return
    data = source
    try:
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _read_at_most(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    assert stream is not None
    parts: list[bytes] = []
    size = 0
    while chunk := await stream.read(1 << 16):
        size += len(chunk)
        if size > limit:
            raise _TooMuchOutput
        parts.append(chunk)
    return b"".join(parts)


async def _read_tail(stream: asyncio.StreamReader | None, keep: int) -> bytes:
    assert stream is not None
    tail = b""
    while chunk := await stream.read(1 << 16):
        tail = (tail + chunk)[-keep:]
    return tail


def _child_environment() -> dict[str, str]:
    """Nothing of the server's environment (tokens, store URLs) but what loading the libraries needs."""
    environment = {
        "PATH": os.defpath,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if "LD_LIBRARY_PATH" in os.environ:
        environment["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return environment


def _in_a_thread_of_its_own(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run `work` on a fresh event loop in a new thread and return its result (or raise its error)."""
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        async def wrapped() -> _T:
            return await work()

        try:
            outcome.append(asyncio.run(wrapped()))
        except BaseException as error:  # handed to the caller's thread below
            failure.append(error)

    thread = threading.Thread(target=run, name="sound-decoding")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
