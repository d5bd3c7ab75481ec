"""The library's sounds as elastic tracks of ready-serialised ``AudioPacket`` messages.

A packet is serialised once, when it is first built, and the same bytes are written to every
device that plays it: the audio stream's serializer is the identity (``rpc.registration``), so
a fan-out to a thousand devices costs one serialisation per packet, not a thousand.
"""

from __future__ import annotations

from collections import OrderedDict

from media.library import EncodedSound, SoundLibrary
from media.packing import ElasticTrack, max_frames_per_packet
from rpc import comms_pb2 as pb

UPLOADED_TRACKS_KEPT = 64
"""Tracks of sounds added at run time kept ready (most recently played first)."""


class WirePacket:
    """One ``AudioPacket`` as it goes on the wire; the flags stay readable for the wire rule."""

    __slots__ = ("is_end", "is_start", "payload")

    def __init__(self, data: bytes, is_start: bool, is_end: bool) -> None:
        self.is_start = is_start
        self.is_end = is_end
        self.payload = pb.AudioPacket(is_start=is_start, is_end=is_end, data=data).SerializeToString()

    def message(self) -> pb.AudioPacket:
        """The packet parsed back (tests and logs; the hot path never parses)."""
        return pb.AudioPacket.FromString(self.payload)


def wire_packet(data: bytes, is_start: bool, is_end: bool, frames: int) -> WirePacket:
    return WirePacket(data, is_start, is_end)


AudioTrack = ElasticTrack[WirePacket]


class TrackBook:
    """The library's own sounds are set up once; a sound added at run time when first played,
    and kept while it is among the most recently played. Packets are built on first use."""

    def __init__(self, library: SoundLibrary) -> None:
        self.frame_duration = library.frame_ms / 1000
        self._frame_ms = library.frame_ms
        self.max_frames = max_frames_per_packet(library.frame_ms)
        self._tracks: dict[int, AudioTrack] = {}
        for sound in library.sounds:
            self._tracks[id(sound)] = self._track_of(sound)
        self._added: OrderedDict[int, tuple[EncodedSound, AudioTrack]] = OrderedDict()
        self.end_packet = WirePacket(library.silence_packet, False, True)

    def track(self, sound: EncodedSound) -> AudioTrack:
        track = self._tracks.get(id(sound))
        if track is not None:
            return track
        added = self._added.get(id(sound))
        if added is not None and added[0] is sound:  # the same object, not a reused id
            self._added.move_to_end(id(sound))
            return added[1]
        track = self._track_of(sound)
        self._added[id(sound)] = (sound, track)
        while len(self._added) > UPLOADED_TRACKS_KEPT:
            self._added.popitem(last=False)
        return track

    def _track_of(self, sound: EncodedSound) -> AudioTrack:
        """Every packet carries real audio; the first opens the recording, the last closes it."""
        # Frames of another duration than the library's are never joined: sent as they are.
        max_frames = self.max_frames if sound.frame_ms == self._frame_ms else 1
        return ElasticTrack(sound.packets, wire_packet, max_frames)
