"""The library's sounds as ready-made ``AudioPacket`` messages, built once at start-up."""

from __future__ import annotations

from media.library import EncodedSound, SoundLibrary
from rpc import comms_pb2 as pb


class TrackBook:
    def __init__(self, library: SoundLibrary) -> None:
        self.frame_duration = library.frame_ms / 1000
        self._tracks: dict[int, tuple[pb.AudioPacket, ...]] = {}
        for sound in library.sounds:
            self._tracks[id(sound)] = packets_of(sound)
        self.end_packet = pb.AudioPacket(is_end=True, data=library.silence_packet)

    def track(self, sound: EncodedSound) -> tuple[pb.AudioPacket, ...]:
        track = self._tracks.get(id(sound))
        return track if track is not None else packets_of(sound)


def packets_of(sound: EncodedSound) -> tuple[pb.AudioPacket, ...]:
    """Every packet carries real audio; the first opens the recording, the last closes it."""
    last = len(sound.packets) - 1
    return tuple(
        pb.AudioPacket(is_start=index == 0, is_end=index == last, data=data)
        for index, data in enumerate(sound.packets)
    )
