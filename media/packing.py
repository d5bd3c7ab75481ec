"""Elastic packets: one sound's 20 ms frames, sent as packets of one to six of them.

Under load a stream carries more audio per message (fewer messages is what relieves gRPC, whose
cost is per message); idle, it keeps one frame per packet. The frames are the encoder's output,
joined without re-encoding (``media.repacketize``), so a stream may change its packet size at any
packet boundary without a seam.

Packets are built on first use and kept on the track, so every stream playing the sound shares
them (an announcement to a thousand devices builds each packet once; only the framing the
transport layer adds is per device). A packet of ``n`` frames starts on a multiple of ``n``: a
stream that asks for ``n`` frames at another index gets the few frames up to the next multiple
first. That keeps the kept packets to about 2.5 times the frame count whatever sizes the streams
use, and streams that started at different moments still share them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from media.repacketize import Repacketizer

W = TypeVar("W")

PacketFactory = Callable[[bytes, bool, bool, int], W]
"""Makes the transport layer's packet from (Opus data, is_start, is_end, frames it holds)."""

MAX_PACKET_MS = 120
"""The most audio one Opus packet may hold (RFC 6716 §3.2.5)."""

_repacketizers = threading.local()


def _repacketizer() -> Repacketizer:
    repacketizer: Repacketizer | None = getattr(_repacketizers, "state", None)
    if repacketizer is None:
        repacketizer = _repacketizers.state = Repacketizer()
    return repacketizer


def max_frames_per_packet(frame_ms: int) -> int:
    """How many frames of ``frame_ms`` one packet may hold (6 of 20 ms, 2 of 60 ms, 1 of 120 ms)."""
    return max(1, MAX_PACKET_MS // frame_ms)


class ElasticTrack(Generic[W]):
    """A sound's frames and the packets built from them, shared by every stream that plays it."""

    __slots__ = ("_built", "_factory", "_frames", "max_frames")

    def __init__(self, frames: Sequence[bytes], factory: PacketFactory[W], max_frames: int) -> None:
        if not frames:
            raise ValueError("a track needs at least one frame")
        self._frames = tuple(frames)
        self._factory = factory
        self.max_frames = max(1, max_frames)
        self._built: dict[tuple[int, int], tuple[W, int]] = {}

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def built(self) -> int:
        """Packets built so far (for tests and memory accounting)."""
        return len(self._built)

    def packet(self, index: int, frames: int) -> tuple[W, int]:
        """The packet starting at frame ``index`` of at most ``frames`` frames, and how many it holds.

        It holds fewer when ``index`` is not on a multiple of ``frames`` (up to the next one), near
        the end of the track, or where the encoder changed configuration (libopus joins only
        frames of one).
        """
        wanted = max(1, min(frames, self.max_frames))
        wanted = min(wanted - index % wanted, len(self._frames) - index)
        key = (index, wanted)
        packet = self._built.get(key)
        if packet is None:
            data, taken = _repacketizer().join(self._frames[index : index + wanted])
            last = index + taken == len(self._frames)
            packet = self._built[key] = (self._factory(data, index == 0, last, taken), taken)
        return packet
