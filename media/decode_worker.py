"""The child process that decodes one untrusted sound file: `python -m media.decode_worker`.

It reads the file on stdin (a pipe, or the file itself), limits itself (address space, CPU time, no core dumps, no files
written, few descriptors) before it reads a byte of it, decodes it (media.decode) and encodes
it in Opus, and writes the stored form of the sound (media.stored_packets) on stdout. A file it
refuses gets exit status 3 and the reason on stdout; running out of its memory, status 4.
media.sandbox starts it, feeds it, and kills it when it takes too long.
"""

from __future__ import annotations

import argparse
import os
import resource
import stat
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from media.decode import SoundFileError, decode_pcm_chunks, prepare
from media.opus import OpusEncoder
from media.sound import EncodedSound
from media.stored_packets import pack

REFUSED = 3
OUT_OF_MEMORY = 4

MAX_OPEN_FILES = 16
"""Enough for stdin, stdout, stderr and the libraries' own; not for a pile of sockets."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    prepare()
    limit_self(args.memory_bytes, args.cpu_seconds)
    try:
        source, size = _input()
        sound = encode(args.name, source, args.frame_ms, args.max_seconds, args.subject)
    except SoundFileError as refusal:
        sys.stdout.buffer.write(str(refusal).encode())
        return REFUSED
    except MemoryError:
        return OUT_OF_MEMORY
    sys.stdout.buffer.write(pack(sound, size))
    return 0


def encode(
    name: str, source: bytes | BinaryIO, frame_ms: int, max_seconds: float, subject: str
) -> EncodedSound:
    """Decode, then Opus-encode in `frame_ms` frames with a fresh encoder (as media.library does), letting
    go of each piece of PCM once encoded."""
    chunks = deque(decode_pcm_chunks(source, subject, max_seconds))
    samples = sum(len(chunk) for chunk in chunks)
    packets = OpusEncoder(frame_ms).encode_chunks(_draining(chunks))
    return EncodedSound(name=name, frame_ms=frame_ms, packets=packets, samples=samples)


def limit_self(memory_bytes: int, cpu_seconds: int) -> None:
    """Limits that hold for the rest of this process's life: `memory_bytes` more address space than it
    has now (the interpreter and libraries are already loaded), `cpu_seconds` of CPU (SIGXCPU, then
    SIGKILL a second later), no core file, no file written, few descriptors."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))
    address_space = _address_space_in_use() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def _input() -> tuple[bytes | BinaryIO, int]:
    """The file on stdin and its size: a regular file is read in place (a long WAV from the sounds
    directory is never held whole), a pipe is read whole."""
    stdin = sys.stdin.buffer
    status = os.fstat(stdin.fileno())
    if stat.S_ISREG(status.st_mode):
        return stdin, status.st_size
    data = stdin.read()
    return data, len(data)


def _address_space_in_use() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError("VmSize is missing from /proc/self/status")


def _draining(chunks: deque[npt.NDArray[np.int16]]) -> Iterator[npt.NDArray[np.int16]]:
    while chunks:
        yield chunks.popleft()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m media.decode_worker", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--subject", required=True, help="what refusal messages call the file")
    parser.add_argument("--frame-ms", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--memory-bytes", type=int, required=True)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    return parser


if __name__ == "__main__":
    sys.exit(main())
