"""Elastic packets against real libopus: joined frames decode exactly like the frames they came from."""

from __future__ import annotations

import numpy as np
import pytest

from media.opus import SAMPLE_RATE, OpusDecoder, OpusEncoder, decode_packets
from media.packing import ElasticTrack, max_frames_per_packet
from media.repacketize import OpusPacketError, Repacketizer, libopus_packet_samples, packet_samples
from media.synth import default_pcm

FRAME_SAMPLES = SAMPLE_RATE // 50


def frames_of(seconds: float, mode: int = 1) -> tuple[bytes, ...]:
    return OpusEncoder(20).encode(default_pcm(mode)[: int(SAMPLE_RATE * seconds)])


def raw(data: bytes, is_start: bool, is_end: bool, frames: int) -> tuple[bytes, bool, bool, int]:
    return data, is_start, is_end, frames


def packets(track: ElasticTrack[tuple[bytes, bool, bool, int]], sizes: list[int]) -> list[bytes]:
    """The packets a stream sends asking for ``sizes[i]`` frames at its i-th packet (the last size repeats)."""
    sent: list[bytes] = []
    index = 0
    while index < len(track):
        (data, _, _, _), taken = track.packet(index, sizes[min(len(sent), len(sizes) - 1)])
        sent.append(data)
        index += taken
    return sent


@pytest.mark.parametrize("size", [2, 3, 4, 5, 6])
def test_packets_of_joined_frames_decode_sample_for_sample_like_the_frames_they_came_from(size: int) -> None:
    frames = frames_of(3.0)
    track = ElasticTrack(frames, raw, 6)
    joined = packets(track, [size])
    assert len(joined) < len(frames)
    assert np.array_equal(decode_packets(joined), decode_packets(frames))


def test_a_stream_that_changes_its_packet_size_mid_clip_decodes_without_a_gap() -> None:
    frames = frames_of(2.0)
    track = ElasticTrack(frames, raw, 6)
    sent = packets(track, [1, 1, 1, 6, 6, 2, 6, 3, 1, 5, 6])
    decoded = decode_packets(sent)
    assert len(decoded) == len(frames) * FRAME_SAMPLES, "no frame lost or doubled at a size change"
    assert np.array_equal(decoded, decode_packets(frames))


def test_every_packet_decodes_to_exactly_the_duration_its_toc_byte_says() -> None:
    track = ElasticTrack(frames_of(3.0, mode=2), raw, 6)
    decoder = OpusDecoder()
    for data in packets(track, [6, 4, 1, 3, 5, 2]):
        assert packet_samples(data) == libopus_packet_samples(data) == len(decoder.decode(data))


def test_a_packet_holds_at_most_120_ms() -> None:
    track = ElasticTrack(frames_of(1.0), raw, 6)
    assert all(packet_samples(data) <= SAMPLE_RATE * 120 // 1000 for data in packets(track, [9]))
    assert max_frames_per_packet(20) == 6
    assert max_frames_per_packet(60) == 2
    assert max_frames_per_packet(120) == 1


def test_a_packet_of_n_frames_starts_on_a_multiple_of_n_so_streams_started_apart_share_it() -> None:
    track = ElasticTrack(frames_of(2.0), raw, 6)
    (_, _, _, first), taken = track.packet(7, 6)
    assert (first, taken) == (5, 5), "frames 7..11: up to frame 12, the next multiple of 6"
    one, _ = track.packet(12, 6)
    other, _ = track.packet(12, 6)
    assert one is other, "built once, shared"
    built = track.built
    for index in range(0, len(track), 6):
        track.packet(index, 6)
    for index in range(0, len(track), 6):
        track.packet(index, 6)
    assert track.built <= built + len(track) // 6 + 1


def test_only_the_first_packet_opens_the_recording_and_only_the_last_closes_it() -> None:
    frames = frames_of(1.0)
    track = ElasticTrack(frames, raw, 6)
    index, flags = 0, []
    while index < len(track):
        (_, is_start, is_end, _), taken = track.packet(index, 4)
        flags.append((is_start, is_end))
        index += taken
    assert flags[0] == (True, False)
    assert flags[-1] == (False, True)
    assert all(flag == (False, False) for flag in flags[1:-1])


def test_frames_of_another_configuration_end_the_packet_there() -> None:
    """libopus joins only frames of one configuration: a 10 ms frame starts a packet of its own."""
    twenty = OpusEncoder(20).encode(default_pcm(0)[: FRAME_SAMPLES * 2])
    ten = OpusEncoder(10).encode(default_pcm(0)[: FRAME_SAMPLES // 2])
    data, taken = Repacketizer().join([*twenty, *ten])
    assert taken == 2
    assert packet_samples(data) == 2 * FRAME_SAMPLES


def test_bytes_that_are_not_opus_are_refused_by_name() -> None:
    with pytest.raises(OpusPacketError, match="not a valid Opus packet"):
        Repacketizer().join([b"", b"\x00"])
    with pytest.raises(OpusPacketError, match="empty packet"):
        packet_samples(b"")
    with pytest.raises(OpusPacketError, match="zero frames"):
        packet_samples(bytes([0xFB, 0x00]))
    with pytest.raises(OpusPacketError, match="longer than 120 ms"):
        packet_samples(bytes([0xFB, 0x07]))  # seven 20 ms frames
