"""One clip as the device received it: the packets, when each arrived, and the PCM the decoder made."""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.opus import SAMPLE_RATE
from rpc import comms_pb2

PCM = npt.NDArray[np.int16]


@dataclass(eq=False)
class Recording:
    """A recording opened by an is_start packet; kept even when it never saw its is_end.

    ``complete`` is True only when an is_end packet closed it; a recording superseded by a new
    is_start, cut by a disconnect or by a dead audio loop stays incomplete (and is never played).
    """

    connection: int
    """Which connect() of the device it arrived on (1 for the first)."""
    started_at: float
    """time.monotonic() when the is_start packet arrived."""
    packets: list[comms_pb2.AudioPacket] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    """time.monotonic() of each packet in ``packets``, in the same order."""
    complete: bool = False
    ended_at: float | None = None
    """time.monotonic() when it was closed (by is_end or otherwise); None while still open."""
    _chunks: list[PCM] = field(default_factory=list, repr=False)
    _pcm: PCM | None = field(default=None, repr=False)

    def add(self, packet: comms_pb2.AudioPacket, pcm: PCM, arrived_at: float) -> None:
        """Append one decoded packet; the PCM is concatenated lazily so long clips stay linear."""
        self.packets.append(packet)
        self.arrivals.append(arrived_at)
        self._chunks.append(pcm)
        self._pcm = None

    def close(self, at: float, *, complete: bool) -> None:
        if self.ended_at is None:
            self.ended_at = at
            self.complete = complete

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    @property
    def pcm(self) -> PCM:
        """All decoded samples, 48 kHz mono int16, concealment for lost (empty) packets included."""
        if self._pcm is None:
            self._pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return self._pcm

    @property
    def samples(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    @property
    def duration(self) -> float:
        """Seconds of audio the device plays for this clip: decoded samples / 48000."""
        return self.samples / SAMPLE_RATE

    def save_wav(self, path: str | Path) -> Path:
        """Write the decoded audio as a 48 kHz mono 16-bit WAV so a person can listen to it."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(target), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(self.pcm.astype("<i2").tobytes())
        return target
