"""The built-in sounds: usable as they are, and every mode recognisably its own."""

from __future__ import annotations

import itertools
import time

import numpy as np
import numpy.typing as npt
import pytest

from media.opus import SAMPLE_RATE, OpusEncoder, decode_packets
from media.synth import DEFAULT_LONG_MODE, default_pcm

MODES = range(24)
PEAK_AT_MINUS_6_DBFS = 32767 * 10 ** (-6 / 20)


@pytest.fixture(scope="module")
def sounds() -> list[npt.NDArray[np.int16]]:
    return [default_pcm(mode) for mode in MODES]


@pytest.mark.parametrize("mode", MODES)
def test_sound_is_mono_int16(mode: int, sounds: list[npt.NDArray[np.int16]]) -> None:
    assert sounds[mode].dtype == np.int16
    assert sounds[mode].ndim == 1


@pytest.mark.parametrize("mode", MODES)
def test_sound_is_audible(mode: int, sounds: list[npt.NDArray[np.int16]]) -> None:
    pcm = sounds[mode].astype(np.float64)
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(pcm**2)) / 32767)
    assert rms_dbfs > -30


@pytest.mark.parametrize("mode", MODES)
def test_sound_peaks_near_minus_6_dbfs_without_clipping(
    mode: int, sounds: list[npt.NDArray[np.int16]]
) -> None:
    peak = int(np.max(np.abs(sounds[mode].astype(np.int32))))
    assert peak == pytest.approx(PEAK_AT_MINUS_6_DBFS, rel=0.02)
    assert peak < 32767


@pytest.mark.parametrize("mode", MODES)
def test_sound_fades_in_and_out_without_a_click(mode: int, sounds: list[npt.NDArray[np.int16]]) -> None:
    # A sound that begins or ends mid-wave clicks on the speaker: the edges must be ramps from/to zero.
    pcm = np.abs(sounds[mode].astype(np.int32))
    assert pcm[0] == 0
    assert pcm[-1] == 0
    assert np.max(pcm[: SAMPLE_RATE // 4000]) < 0.2 * PEAK_AT_MINUS_6_DBFS
    assert np.max(pcm[-SAMPLE_RATE // 1000 :]) < 0.02 * PEAK_AT_MINUS_6_DBFS


@pytest.mark.parametrize("mode", MODES)
def test_sound_is_the_same_on_every_call(mode: int, sounds: list[npt.NDArray[np.int16]]) -> None:
    np.testing.assert_array_equal(default_pcm(mode), sounds[mode])


def test_long_mode_lasts_over_half_a_minute(sounds: list[npt.NDArray[np.int16]]) -> None:
    assert len(sounds[DEFAULT_LONG_MODE]) / SAMPLE_RATE >= 30


@pytest.mark.parametrize("mode", [mode for mode in MODES if mode != DEFAULT_LONG_MODE])
def test_other_modes_are_short(mode: int, sounds: list[npt.NDArray[np.int16]]) -> None:
    assert 1.0 <= len(sounds[mode]) / SAMPLE_RATE <= 5.0


def test_modes_beyond_24_exist_too() -> None:
    assert len(default_pcm(100)) > SAMPLE_RATE


def test_negative_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be >= 0"):
        default_pcm(-1)


def test_all_24_sounds_are_generated_quickly() -> None:
    started = time.perf_counter()
    for mode in MODES:
        default_pcm(mode)
    assert time.perf_counter() - started < 1.0


# What a listener compares: which pitches sound when. A semitone-wide filter bank over 50 ms frames of
# the first 1.8 s gives a picture of melody, rhythm and timbre together.
FRAME = SAMPLE_RATE // 20
COMPARED_S = 1.8
_BAND_EDGES = 440 * 2 ** ((np.arange(40, 113) - 0.5 - 69) / 12)  # E2 .. E8
_BAND_OF_BIN = np.searchsorted(_BAND_EDGES, np.fft.rfftfreq(FRAME, 1 / SAMPLE_RATE))
_IN_BANDS = (_BAND_OF_BIN > 0) & (len(_BAND_EDGES) > _BAND_OF_BIN)


def semitone_spectrogram(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    length = round(COMPARED_S * SAMPLE_RATE)
    signal = np.zeros(length)
    signal[: min(length, len(pcm))] = pcm[:length]
    magnitudes = np.abs(np.fft.rfft(signal.reshape(-1, FRAME) * np.hanning(FRAME), axis=1))
    bands = np.zeros((len(magnitudes), len(_BAND_EDGES) - 1))
    for row, frame in zip(bands, magnitudes, strict=True):
        row[:] = np.bincount(_BAND_OF_BIN[_IN_BANDS] - 1, frame[_IN_BANDS], minlength=len(row))
    flat = bands.ravel()
    result: npt.NDArray[np.float64] = flat / np.linalg.norm(flat)
    return result


def similarity(a: npt.NDArray[np.int16], b: npt.NDArray[np.int16]) -> float:
    return float(semitone_spectrogram(a) @ semitone_spectrogram(b))


SAME_SOUND = 0.95
DIFFERENT_SOUNDS = 0.7


@pytest.mark.parametrize("mode", [0, DEFAULT_LONG_MODE, 7, 23])
def test_similarity_measure_sees_a_sound_through_the_codec_as_the_same(
    mode: int, sounds: list[npt.NDArray[np.int16]]
) -> None:
    # Calibrates the next test: the measure is not so strict that anything looks different.
    heard = decode_packets(OpusEncoder(20).encode(sounds[mode]))
    assert similarity(sounds[mode], heard) > SAME_SOUND


def test_every_pair_of_modes_sounds_different(sounds: list[npt.NDArray[np.int16]]) -> None:
    pictures = [semitone_spectrogram(pcm) for pcm in sounds]
    alike = {
        (a, b): round(float(pictures[a] @ pictures[b]), 2)
        for a, b in itertools.combinations(MODES, 2)
        if pictures[a] @ pictures[b] >= DIFFERENT_SOUNDS
    }
    assert alike == {}
