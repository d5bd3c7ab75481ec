"""One sound as the server plays it: Opus packets encoded once, copied to every device that plays it."""

from __future__ import annotations

from dataclasses import dataclass, field

from media.opus import SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class EncodedSound:
    name: str
    """The name the admin API knows it by: `builtin-1`, or a sound file's name without its extension."""
    frame_ms: int
    packets: tuple[bytes, ...] = field(repr=False)  # thousands of packets would drown any log line
    samples: int
    """Samples of the source at 48 kHz, before the last packet was padded to a whole frame."""

    @property
    def duration(self) -> float:
        """Seconds of the source sound."""
        return self.samples / SAMPLE_RATE

    @property
    def streamed_duration(self) -> float:
        """Seconds the device plays, the last frame's padding included: what pacing must wait for."""
        return len(self.packets) * self.frame_ms / 1000
