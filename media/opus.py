"""Opus framing as the device decodes it: 48 kHz, mono, 16-bit, one Opus packet per AudioPacket."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import opuslib

SAMPLE_RATE = 48_000
CHANNELS = 1
SAMPLE_WIDTH = 2
FRAME_DURATIONS_MS = (10, 20, 40, 60, 80, 100, 120)
"""Packet durations libopus (>= 1.2) encodes in one opus_encode call; 20 ms is the default.

Like 40 and 60 ms, 80, 100 and 120 ms come out as multi-frame packets (at 48 kbit/s, four to six
20 ms frames behind one header), which the device decodes like any other: 120 ms is the most one
Opus packet may carry, and exactly the device decoder's buffer. 2.5 and 5 ms are not offered: they
would only multiply the per-packet cost.

20 ms stays the default because it gives the lowest latency to first sound and loses the least audio
when a packet is dropped; larger packets carry the same bytes per second in fewer packets, which
cuts the server's per-packet CPU (scheduling, protobuf, gRPC writes) for large fleets.
"""

MAX_DECODED_FRAME_SAMPLES = SAMPLE_RATE * 120 // 1000
"""The longest audio one Opus packet may carry (120 ms), the decoder's buffer size."""


def samples_per_frame(frame_ms: int) -> int:
    """Samples in one packet of ``frame_ms``; any duration not in FRAME_DURATIONS_MS is refused."""
    if frame_ms not in FRAME_DURATIONS_MS:
        raise ValueError(f"frame duration {frame_ms} ms is not one of {FRAME_DURATIONS_MS}")
    return SAMPLE_RATE * frame_ms // 1000


class OpusEncoder:
    """Cuts mono int16 PCM into frames and encodes each one as a self-contained Opus packet."""

    def __init__(self, frame_ms: int = 20, bitrate: int = 48_000) -> None:
        self.frame_ms = frame_ms
        self.frame_samples = samples_per_frame(frame_ms)
        self._encoder = opuslib.Encoder(SAMPLE_RATE, CHANNELS, opuslib.APPLICATION_AUDIO)
        self._encoder.bitrate = bitrate

    def encode(self, pcm: np.ndarray) -> tuple[bytes, ...]:
        """Encode the whole signal; the last frame is padded with silence to a full frame."""
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("expected mono int16 PCM")
        frames = -(-len(pcm) // self.frame_samples)
        padded = np.zeros(frames * self.frame_samples, dtype=np.int16)
        padded[: len(pcm)] = pcm
        return self._encode_frames(padded)

    def encode_chunks(self, chunks: Iterable[np.ndarray]) -> tuple[bytes, ...]:
        """encode() of the chunks joined end to end, without joining them: a long sound is never held
        twice. The packets are the same bytes encode() would give."""
        packets: list[bytes] = []
        pending = np.zeros(0, dtype=np.int16)
        for chunk in chunks:
            if chunk.dtype != np.int16 or chunk.ndim != 1:
                raise ValueError("expected mono int16 PCM")
            pending = np.concatenate((pending, chunk))
            whole = len(pending) - len(pending) % self.frame_samples
            if whole:
                packets.extend(self._encode_frames(pending[:whole]))
                pending = pending[whole:]
        return (*packets, *self.encode(pending))

    def _encode_frames(self, pcm: np.ndarray) -> tuple[bytes, ...]:
        """Whole frames only: len(pcm) is a multiple of frame_samples."""
        return tuple(
            bytes(self._encoder.encode(pcm[i : i + self.frame_samples].tobytes(), self.frame_samples))
            for i in range(0, len(pcm), self.frame_samples)
        )

    def silence_packet(self) -> bytes:
        """One frame of digital silence: a valid packet to close a recording early."""
        return self.encode(np.zeros(self.frame_samples, dtype=np.int16))[0]


class OpusDecoder:
    """The device's side: one decoder per connection; an empty packet is decoded as a lost one."""

    def __init__(self) -> None:
        self._decoder = opuslib.Decoder(SAMPLE_RATE, CHANNELS)

    def decode(self, packet: bytes) -> np.ndarray:
        # libopus conceals a lost packet (empty data) with frame_size samples: 120 ms here.
        pcm = self._decoder.decode(packet, MAX_DECODED_FRAME_SAMPLES)
        return np.frombuffer(pcm, dtype=np.int16)


def decode_packets(packets: Iterable[bytes]) -> np.ndarray:
    """Decode a whole recording with a fresh decoder, as the device does per connection."""
    decoder = OpusDecoder()
    chunks = [decoder.decode(packet) for packet in packets]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
