"""The library's sounds as ready-made ``AudioPacket`` messages, built once at start-up."""

from __future__ import annotations

from collections import OrderedDict

from media.library import EncodedSound, SoundLibrary
from rpc import comms_pb2 as pb

UPLOADED_TRACKS_KEPT = 64
"""Tracks of sounds added at run time kept ready (most recently played first)."""


class TrackBook:
    """The library's own sounds are built once; a sound added at run time is built when first
    played and kept while it is among the most recently played."""

    def __init__(self, library: SoundLibrary) -> None:
        self.frame_duration = library.frame_ms / 1000
        self._tracks: dict[int, tuple[pb.AudioPacket, ...]] = {}
        for sound in library.sounds:
            self._tracks[id(sound)] = packets_of(sound)
        self._added: OrderedDict[int, tuple[EncodedSound, tuple[pb.AudioPacket, ...]]] = OrderedDict()
        self.end_packet = pb.AudioPacket(is_end=True, data=library.silence_packet)

    def track(self, sound: EncodedSound) -> tuple[pb.AudioPacket, ...]:
        track = self._tracks.get(id(sound))
        if track is not None:
            return track
        added = self._added.get(id(sound))
        if added is not None and added[0] is sound:  # the same object, not a reused id
            self._added.move_to_end(id(sound))
            return added[1]
        track = packets_of(sound)
        self._added[id(sound)] = (sound, track)
        while len(self._added) > UPLOADED_TRACKS_KEPT:
            self._added.popitem(last=False)
        return track


def packets_of(sound: EncodedSound) -> tuple[pb.AudioPacket, ...]:
    """Every packet carries real audio; the first opens the recording, the last closes it."""
    last = len(sound.packets) - 1
    return tuple(
        pb.AudioPacket(is_start=index == 0, is_end=index == last, data=data)
        for index, data in enumerate(sound.packets)
    )
