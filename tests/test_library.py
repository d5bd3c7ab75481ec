"""The per-mode library: encoded once, decodable as the device decodes it, configurable by file name."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from media.decode import SoundFileError
from media.library import EncodedSound, SoundConfigError, SoundLibrary, build_library
from media.opus import SAMPLE_RATE, OpusDecoder, decode_packets, samples_per_frame
from media.synth import DEFAULT_LONG_MODE
from tests.audio_files import dominant_frequency, write_tone

MODES = 24


@pytest.fixture(scope="module")
def defaults() -> SoundLibrary:
    return build_library(MODES)


@pytest.fixture(scope="module")
def five_modes() -> SoundLibrary:
    return build_library(5)


def test_default_library_has_a_built_in_sound_for_every_mode(defaults: SoundLibrary) -> None:
    assert defaults.modes == MODES
    assert [sound.name for sound in defaults.sounds] == [f"builtin-{mode}" for mode in range(MODES)]
    assert all(sound.frame_ms == 20 for sound in defaults.sounds)


@pytest.mark.parametrize("mode", range(MODES))
def test_packets_decode_to_whole_frames_covering_the_source(defaults: SoundLibrary, mode: int) -> None:
    sound = defaults.for_mode(mode)
    frame = samples_per_frame(20)
    decoded = decode_packets(sound.packets)
    assert len(decoded) == len(sound.packets) * frame
    assert 0 <= len(decoded) - sound.samples < frame
    assert np.max(np.abs(decoded.astype(np.int32))) > 4000


def test_durations_are_of_the_source_and_of_what_is_streamed(defaults: SoundLibrary) -> None:
    sound = defaults.for_mode(DEFAULT_LONG_MODE)
    assert sound.duration == sound.samples / SAMPLE_RATE
    assert sound.duration >= 30
    assert sound.streamed_duration == pytest.approx(len(sound.packets) * 0.02)
    assert sound.duration <= sound.streamed_duration < sound.duration + 0.02


def test_encoded_sound_is_immutable(defaults: SoundLibrary) -> None:
    sound: EncodedSound = defaults.for_mode(0)
    with pytest.raises(AttributeError):
        sound.name = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("mode", [-1, MODES, MODES + 5])
def test_mode_outside_the_library_is_refused(defaults: SoundLibrary, mode: int) -> None:
    with pytest.raises(IndexError, match=f"mode {mode} is out of range: the library has modes 0..23"):
        defaults.for_mode(mode)


def test_sixty_ms_frames_give_sixty_ms_packets() -> None:
    library = build_library(1, frame_ms=60)
    decoder = OpusDecoder()
    assert {len(decoder.decode(packet)) for packet in library.for_mode(0).packets} == {samples_per_frame(60)}
    assert library.for_mode(0).streamed_duration == pytest.approx(len(library.for_mode(0).packets) * 0.06)


@pytest.mark.parametrize("frame_ms", [10, 20, 40, 60])
def test_silence_packet_decodes_to_one_silent_frame(frame_ms: int) -> None:
    silence = OpusDecoder().decode(build_library(1, frame_ms=frame_ms).silence_packet)
    assert len(silence) == samples_per_frame(frame_ms)
    assert np.max(np.abs(silence.astype(np.int32))) <= 16


def test_sound_file_replaces_exactly_its_mode(tmp_path: Path, five_modes: SoundLibrary) -> None:
    write_tone(tmp_path / "2-beep.wav", 1000.0, seconds=1.5)

    library = build_library(5, sounds_dir=tmp_path)

    replaced = library.for_mode(2)
    assert replaced.name == "2-beep"
    assert replaced.samples == round(1.5 * SAMPLE_RATE)
    assert dominant_frequency(decode_packets(replaced.packets)) == pytest.approx(1000.0, abs=2.0)
    for mode in (0, 1, 3, 4):
        assert library.for_mode(mode) == five_modes.for_mode(mode)


def test_label_with_dots_keeps_them_in_the_name(tmp_path: Path) -> None:
    write_tone(tmp_path / "1-door.bell.wav")
    assert build_library(2, sounds_dir=tmp_path).for_mode(1).name == "1-door.bell"


def test_a_sound_is_found_by_its_name(tmp_path: Path) -> None:
    write_tone(tmp_path / "1-chime.wav")
    library = build_library(2, sounds_dir=tmp_path)
    assert library.named("builtin-0") is library.for_mode(0)
    assert library.named("1-chime") is library.for_mode(1)


@pytest.mark.parametrize("name", ["builtin-1", "builtin-2", "1-chime.wav", "", "chime"])
def test_a_name_the_library_does_not_hold_finds_nothing(tmp_path: Path, name: str) -> None:
    write_tone(tmp_path / "1-chime.wav")
    assert build_library(2, sounds_dir=tmp_path).named(name) is None


def test_file_named_by_mode_alone_is_used(tmp_path: Path) -> None:
    write_tone(tmp_path / "0.flac", codec="flac")
    assert build_library(1, sounds_dir=tmp_path).for_mode(0).name == "0"


def test_hidden_and_unnumbered_files_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "README.md").write_text("Put <mode>-<label>.<ext> files here.\n")
    (tmp_path / ".0-draft.wav").write_bytes(b"not audio")
    (tmp_path / "archive").mkdir()

    with caplog.at_level(logging.WARNING, logger="media.library"):
        library = build_library(1, sounds_dir=tmp_path)

    assert library.for_mode(0).name == "builtin-0"
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "README.md" in warned
    assert "archive" in warned
    assert ".0-draft.wav" not in warned


def test_each_mode_is_logged_with_its_sound(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tone(tmp_path / "1-chime.wav", seconds=1.0)
    with caplog.at_level(logging.INFO, logger="media.library"):
        build_library(2, sounds_dir=tmp_path)
    logged = [record.getMessage() for record in caplog.records]
    assert logged[0].startswith("mode 0 plays builtin-0 (")
    assert logged[1].startswith("mode 1 plays 1-chime (1.00 s")


def test_missing_sounds_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SoundConfigError, match=r"sounds directory .*absent does not exist"):
        build_library(5, sounds_dir=tmp_path / "absent")


def test_sounds_directory_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "0.wav")
    with pytest.raises(SoundConfigError, match=r"sounds directory .*0\.wav is not a directory"):
        build_library(5, sounds_dir=path)


def test_two_files_for_one_mode_are_a_config_error(tmp_path: Path) -> None:
    write_tone(tmp_path / "3.wav")
    write_tone(tmp_path / "03-bell.flac", codec="flac")
    with pytest.raises(SoundConfigError, match=r"03-bell\.flac and .*3\.wav are both sounds for mode 3"):
        build_library(5, sounds_dir=tmp_path)


def test_file_for_a_mode_beyond_the_configured_ones_is_a_config_error(tmp_path: Path) -> None:
    write_tone(tmp_path / "5-extra.wav")
    with pytest.raises(SoundConfigError, match=r"5-extra\.wav: mode 5 does not exist, modes are 0\.\.4"):
        build_library(5, sounds_dir=tmp_path)


@pytest.mark.parametrize("name", ["3_bell.wav", "3", "3.bell.wav"])
def test_numbered_name_of_the_wrong_shape_is_a_config_error(tmp_path: Path, name: str) -> None:
    write_tone(tmp_path / "tone.wav").rename(tmp_path / name)
    with pytest.raises(SoundConfigError, match=rf"{name}: a sound for a mode must be a file named"):
        build_library(5, sounds_dir=tmp_path)


def test_file_that_fails_to_decode_is_a_config_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "4-broken.mp3").write_bytes(b"ID3 and then nothing useful" * 10)
    with pytest.raises(
        SoundConfigError, match=r"4-broken\.mp3: not an audio file FFmpeg can decode"
    ) as raised:
        build_library(5, sounds_dir=tmp_path)
    assert isinstance(raised.value.__cause__, SoundFileError)


@pytest.mark.parametrize("modes", [0, 25, -1])
def test_mode_count_outside_1_to_24_is_refused(modes: int) -> None:
    with pytest.raises(ValueError, match=f"modes must be an integer from 1 to 24, got {modes}"):
        build_library(modes)


@pytest.mark.parametrize("frame_ms", [0, 5, 30, 150])
def test_frame_duration_opus_does_not_encode_is_refused(frame_ms: int) -> None:
    with pytest.raises(
        ValueError,
        match=rf"frame duration must be one of \(10, 20, 40, 60, 80, 100, 120\) ms, got {frame_ms}",
    ):
        build_library(1, frame_ms=frame_ms)
