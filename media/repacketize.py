"""Joining encoded Opus frames into one packet, and reading a packet's duration, with libopus itself.

opuslib wraps the encoder and decoder only, so the few repacketizer calls are bound here with
ctypes (``opus_repacketizer_init``/``_cat``/``_out``, RFC 6716 §3.2.5 code-3 packets). Joining
frames re-encodes nothing: the packet carries the same bytes the encoder made, behind one TOC
byte and a frame count, so a stream stays one encoder's output whatever size its packets are.

libopus joins only frames of one configuration (mode, bandwidth, frame size, channels) and at
most 120 ms of them; ``join`` therefore takes as many of the frames offered as fit and says how
many it took. ``packet_samples`` reads a packet's duration from its TOC byte in pure Python (what
a receiver does per packet); the tests hold it against libopus's ``opus_packet_get_nb_samples``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

from opuslib.api import libopus

from media.opus import MAX_DECODED_FRAME_SAMPLES, SAMPLE_RATE

_OK = 0
_MAX_PACKET_BYTES = 48 * 1277 + 2
"""Room for the largest code-3 packet: 48 frames (120 ms of 2.5 ms ones) of 1275 bytes, each with
a two-byte length, behind the TOC and frame count bytes (RFC 6716 §3.2.5)."""

libopus.opus_repacketizer_get_size.restype = ctypes.c_int
libopus.opus_repacketizer_get_size.argtypes = []
libopus.opus_repacketizer_init.restype = ctypes.c_void_p
libopus.opus_repacketizer_init.argtypes = [ctypes.c_void_p]
libopus.opus_repacketizer_cat.restype = ctypes.c_int
libopus.opus_repacketizer_cat.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32]
libopus.opus_repacketizer_out.restype = ctypes.c_int32
libopus.opus_repacketizer_out.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32]
libopus.opus_packet_get_nb_samples.restype = ctypes.c_int
libopus.opus_packet_get_nb_samples.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32]


class OpusPacketError(ValueError):
    """Bytes that libopus does not take as an Opus packet."""


class Repacketizer:
    """One libopus repacketizer state; not thread-safe (each thread that joins needs its own)."""

    def __init__(self) -> None:
        self._state = ctypes.create_string_buffer(libopus.opus_repacketizer_get_size())
        self._out = ctypes.create_string_buffer(_MAX_PACKET_BYTES)

    def join(self, frames: Sequence[bytes]) -> tuple[bytes, int]:
        """One packet of the leading frames that can share it, and how many it holds (at least 1).

        A single frame comes back as it is. Raises OpusPacketError if the first frame is not a
        valid Opus packet.
        """
        if not frames:
            raise ValueError("nothing to join")
        if len(frames) == 1:
            return frames[0], 1
        state = self._state
        libopus.opus_repacketizer_init(state)
        taken = 0
        for frame in frames:
            if libopus.opus_repacketizer_cat(state, frame, len(frame)) != _OK:
                break  # another configuration, or past 120 ms: the next packet starts here
            taken += 1
        if taken == 0:
            raise OpusPacketError("the first frame is not a valid Opus packet")
        if taken == 1:
            return frames[0], 1
        length = libopus.opus_repacketizer_out(state, self._out, _MAX_PACKET_BYTES)
        if length < 0:
            raise OpusPacketError(f"libopus could not write the packet (error {length})")
        return self._out.raw[:length], taken


_FRAME_SAMPLES_48K = (
    # SILK-only (configs 0-11): 10, 20, 40, 60 ms in each of NB, MB, WB
    *([480, 960, 1920, 2880] * 3),
    # Hybrid (12-15): 10, 20 ms in SWB, FB
    *([480, 960] * 2),
    # CELT-only (16-31): 2.5, 5, 10, 20 ms in NB, WB, SWB, FB
    *([120, 240, 480, 960] * 4),
)
"""Samples at 48 kHz of one frame for each of the 32 TOC configurations (RFC 6716 §3.1, table 2)."""


def packet_samples(packet: bytes) -> int:
    """Samples at 48 kHz the packet decodes to, from its TOC byte (and frame count byte, code 3).

    Raises OpusPacketError for a packet too short to say, or one longer than 120 ms.
    """
    if not packet:
        raise OpusPacketError("an empty packet has no TOC byte")
    toc = packet[0]
    per_frame = _FRAME_SAMPLES_48K[toc >> 3]
    code = toc & 0x3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(packet) < 2:
            raise OpusPacketError("a code-3 packet without its frame count byte")
        count = packet[1] & 0x3F
        if count == 0:
            raise OpusPacketError("a code-3 packet of zero frames")
    samples = per_frame * count
    if samples > MAX_DECODED_FRAME_SAMPLES:
        raise OpusPacketError(f"a packet of {samples} samples is longer than 120 ms")
    return samples


def libopus_packet_samples(packet: bytes) -> int:
    """libopus's own reading of the same thing (``opus_packet_get_nb_samples``), at 48 kHz."""
    samples = libopus.opus_packet_get_nb_samples(packet, len(packet), SAMPLE_RATE)
    if samples < 0:
        raise OpusPacketError(f"libopus rejects the packet (error {samples})")
    return int(samples)
