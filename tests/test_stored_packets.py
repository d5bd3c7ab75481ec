"""The stored form of an encoded sound: read back exactly as written, and nothing else read at all."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from media.library import encode_sound
from media.sound import EncodedSound
from media.stored_packets import StoredPacketsError, pack, unpack


@pytest.fixture(scope="module")
def sound() -> EncodedSound:
    rng = np.random.default_rng(7)
    return encode_sound("doorbell", (rng.standard_normal(48_000) * 3000).astype(np.int16), 20)


def resealed(data: bytes) -> bytes:
    """`data` with its checksum made right again, so only the change itself can be objected to."""
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_a_sound_packed_and_unpacked_is_the_same_sound(sound: EncodedSound) -> None:
    stored = unpack(pack(sound, 12_345))
    assert stored.sound == sound
    assert stored.source_bytes == 12_345


def test_a_sound_in_120_ms_frames_with_long_packets_round_trips() -> None:
    rng = np.random.default_rng(8)
    sound = encode_sound("long", (rng.standard_normal(48_000) * 3000).astype(np.int16), 120)
    assert unpack(pack(sound, 1)).sound == sound


@pytest.mark.parametrize("position", [0, 9, 20, 40, 500, -100, -1])
def test_any_changed_byte_is_refused(sound: EncodedSound, position: int) -> None:
    data = bytearray(pack(sound, 1))
    data[position] ^= 0x40
    with pytest.raises(StoredPacketsError):
        unpack(bytes(data))


@pytest.mark.parametrize("length", [0, 10, 40, 1000])
def test_a_file_cut_short_is_refused(sound: EncodedSound, length: int) -> None:
    with pytest.raises(StoredPacketsError):
        unpack(pack(sound, 1)[:length])


def test_another_version_is_refused_by_its_number(sound: EncodedSound) -> None:
    data = bytearray(pack(sound, 1))
    data[8:10] = struct.pack("<H", 2)
    with pytest.raises(StoredPacketsError, match="version 2, this server reads version 1"):
        unpack(resealed(bytes(data)))


def test_a_packet_count_that_does_not_fit_the_samples_is_refused(sound: EncodedSound) -> None:
    data = bytearray(pack(sound, 1))
    data[12:20] = struct.pack("<Q", sound.samples * 2)
    with pytest.raises(StoredPacketsError, match="packets cannot hold"):
        unpack(resealed(bytes(data)))


def test_bytes_that_are_not_a_stored_sound_are_refused() -> None:
    with pytest.raises(StoredPacketsError, match="wrong magic"):
        unpack(b"RIFF" + bytes(100))
