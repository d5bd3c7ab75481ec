"""An encoded sound as bytes: what is kept beside an uploaded file so a restart loads packets instead of
decoding again, and what the decoding child hands back to the server.

Layout, little-endian: a header (magic, version, frame_ms, samples, the size of the source file,
packet count, name length), the name (UTF-8), each packet's length (u16), the packets one after
another, and a CRC-32 of everything before it. A file of another version, torn, or changed on disk
fails to load rather than playing something else.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from dataclasses import dataclass
from itertools import accumulate, pairwise

from media.opus import FRAME_DURATIONS_MS, samples_per_frame
from media.sound import EncodedSound

MAGIC = b"ACPOPUS\0"
VERSION = 1
_HEADER = struct.Struct("<8sHHQQIH")
_CHECKSUM = struct.Struct("<I")
_MAX_PACKET = 0xFFFF


class StoredPacketsError(ValueError):
    """Bytes that are not a whole stored sound of this version; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class StoredSound:
    sound: EncodedSound
    source_bytes: int
    """The size of the file it was encoded from: a cheap check that it still belongs to that file."""


def pack(sound: EncodedSound, source_bytes: int) -> bytes:
    """The stored form of `sound`, encoded from a file of `source_bytes` bytes."""
    name = sound.name.encode()
    lengths = array("H", (len(packet) for packet in sound.packets))
    if any(len(packet) > _MAX_PACKET for packet in sound.packets):
        raise ValueError("an Opus packet cannot be longer than 65,535 bytes")
    if lengths.itemsize != 2:
        raise RuntimeError("array('H') is not 16 bits on this platform")
    header = _HEADER.pack(
        MAGIC, VERSION, sound.frame_ms, sound.samples, source_bytes, len(sound.packets), len(name)
    )
    body = b"".join((header, name, _little_endian(lengths).tobytes(), *sound.packets))
    return body + _CHECKSUM.pack(zlib.crc32(body))


def unpack(data: bytes) -> StoredSound:
    """The sound in `data`, checked whole (checksum, sizes, packet count against its length)."""
    if len(data) < _HEADER.size + _CHECKSUM.size:
        raise StoredPacketsError(f"{len(data)} bytes is too short to be a stored sound")
    magic, version, frame_ms, samples, source_bytes, count, name_length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise StoredPacketsError("not a stored sound (wrong magic bytes)")
    if version != VERSION:
        raise StoredPacketsError(f"stored in version {version}, this server reads version {VERSION}")
    body_end = len(data) - _CHECKSUM.size
    (checksum,) = _CHECKSUM.unpack_from(data, body_end)
    if zlib.crc32(memoryview(data)[:body_end]) != checksum:
        raise StoredPacketsError("the checksum does not match: the file is damaged")
    if frame_ms not in FRAME_DURATIONS_MS:
        raise StoredPacketsError(f"{frame_ms} ms is not an Opus frame duration")
    if count != -(-samples // samples_per_frame(frame_ms)):
        raise StoredPacketsError(f"{count} packets cannot hold {samples} samples in {frame_ms} ms frames")
    name_end = _HEADER.size + name_length
    lengths_end = name_end + 2 * count
    if lengths_end > body_end:
        raise StoredPacketsError("the packet table runs past the end")
    lengths = _little_endian(array("H", data[name_end:lengths_end]))
    if lengths_end + sum(lengths) != body_end:
        raise StoredPacketsError("the packets do not fill the file exactly")
    try:
        name = data[_HEADER.size : name_end].decode()
    except UnicodeDecodeError:
        raise StoredPacketsError("the name is not UTF-8") from None
    ends = list(accumulate(lengths, initial=lengths_end))
    packets = tuple(data[start:end] for start, end in pairwise(ends))
    return StoredSound(EncodedSound(name, frame_ms, packets, samples), source_bytes)


def _little_endian(lengths: array[int]) -> array[int]:
    """The table is little-endian on disk whatever this machine is."""
    if struct.pack("=H", 1) != struct.pack("<H", 1):
        lengths.byteswap()
    return lengths
