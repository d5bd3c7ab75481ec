"""Packet durations from 10 to 120 ms with the real libopus, as the device decodes them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from actors.config import parse_config
from media.library import build_library
from media.opus import (
    FRAME_DURATIONS_MS,
    MAX_DECODED_FRAME_SAMPLES,
    SAMPLE_RATE,
    OpusDecoder,
    OpusEncoder,
    decode_packets,
    samples_per_frame,
)
from media.synth import default_pcm
from simulator import Button, SimulatedDevice
from tests.live import run, serving, target

ALLOWED = "10, 20, 40, 60, 80, 100, 120"


def tone(seconds: float) -> npt.NDArray[np.int16]:
    """A 440 Hz tone whose length is not a whole number of packets, so the last one is padded."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


@pytest.mark.parametrize("frame_ms", FRAME_DURATIONS_MS)
def test_every_frame_duration_encodes_packets_that_decode_to_exactly_that_many_samples(frame_ms: int) -> None:
    decoder = OpusDecoder()
    packets = OpusEncoder(frame_ms).encode(tone(0.77))
    assert {len(decoder.decode(packet)) for packet in packets} == {SAMPLE_RATE * frame_ms // 1000}


def test_a_120_ms_packet_fits_the_device_decoders_buffer() -> None:
    # The device decodes into a 120 ms buffer: the longest packet offered must fill it, not overflow it.
    [packet] = OpusEncoder(120).encode(tone(0.12))
    assert samples_per_frame(max(FRAME_DURATIONS_MS)) == MAX_DECODED_FRAME_SAMPLES
    assert len(OpusDecoder().decode(packet)) == MAX_DECODED_FRAME_SAMPLES


@pytest.mark.parametrize("frame_ms", [80, 100, 120])
def test_a_silence_packet_of_a_long_frame_decodes_to_one_silent_frame(frame_ms: int) -> None:
    # The is_end packet that closes a recording cut short must be as long as every other packet.
    silence = OpusDecoder().decode(OpusEncoder(frame_ms).silence_packet())
    assert len(silence) == samples_per_frame(frame_ms)
    assert np.max(np.abs(silence.astype(np.int32))) <= 16


def test_a_sound_in_120_ms_packets_sounds_the_same_as_in_20_ms_packets() -> None:
    pcm = default_pcm(0)
    short = decode_packets(OpusEncoder(20).encode(pcm)).astype(np.float64)
    long = decode_packets(OpusEncoder(120).encode(pcm)).astype(np.float64)
    assert float(np.corrcoef(short[: len(pcm)], long[: len(pcm)])[0, 1]) > 0.99


def test_120_ms_packets_carry_the_same_bytes_per_second_in_a_sixth_of_the_packets() -> None:
    pcm = default_pcm(0)
    short, long = OpusEncoder(20).encode(pcm), OpusEncoder(120).encode(pcm)
    assert len(long) == -(-len(short) // 6)
    rate_short = sum(map(len, short)) / (len(short) * 0.02)
    rate_long = sum(map(len, long)) / (len(long) * 0.12)
    assert rate_long == pytest.approx(rate_short, rel=0.1)


@pytest.mark.parametrize("frame_ms", ["30", "150"])
def test_frame_durations_libopus_cannot_encode_are_refused_with_a_message_naming_the_allowed_ones(
    frame_ms: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--frame-ms", frame_ms], {})
    assert exit_info.value.code == 2
    assert f"frame duration must be one of {ALLOWED} ms, not {frame_ms}" in capsys.readouterr().err


@pytest.mark.parametrize("frame_ms", [30, 150])
def test_the_encoder_refuses_a_frame_duration_libopus_cannot_encode(frame_ms: int) -> None:
    with pytest.raises(ValueError, match=rf"frame duration {frame_ms} ms is not one of \({ALLOWED}\)"):
        OpusEncoder(frame_ms)


def test_a_server_started_with_frame_ms_120_streams_a_sound_the_device_records_in_full() -> None:
    config = parse_config(["--frame-ms", "120"], {})  # the default 150 ms pre-roll and 10 ms tick
    library = build_library(1, config.frame_ms)
    sound = library.for_mode(0)

    async def scenario() -> None:
        overrides = {"frame_ms": config.frame_ms, "preroll_ms": config.preroll_ms, "tick_ms": config.tick_ms}
        async with (
            serving(library, **overrides) as plane,
            SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as dev,
        ):
            await dev.wait_for_first_set(5)
            assert await dev.press(Button.PLAY)
            [recording] = await dev.wait_for_recordings(1, sound.streamed_duration + 5)
            assert dev.audio_error is None
        assert recording.packets[0].is_start
        assert recording.packets[-1].is_end
        assert len(recording.packets) == len(sound.packets)
        assert len(recording.pcm) == len(sound.packets) * samples_per_frame(120)
        assert recording.duration >= sound.duration
        np.testing.assert_array_equal(recording.pcm, decode_packets(sound.packets))

    run(scenario)
