"""Sound files of the common formats come out as 48 kHz mono s16 of the right length and pitch."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from media.decode import SoundFileError, decode_pcm_bytes, load_pcm
from media.opus import SAMPLE_RATE
from tests.audio_files import dominant_frequency, has_encoder, tone, vorbis_encoder, write_audio, write_tone

TONE_HZ = 1000.0
SECONDS = 1.0
LENGTH_TOLERANCE = round(0.005 * SAMPLE_RATE)
"""Lossy codecs may pad a few milliseconds beyond what their headers let the decoder trim."""


def encoded(
    tmp_path: Path,
    name: str,
    codec: str,
    rate: int,
    layout: str,
    options: dict[str, str] | None = None,
) -> Path:
    if not has_encoder(codec):
        pytest.skip(f"the bundled FFmpeg has no {codec} encoder")
    return write_audio(
        tmp_path / name,
        tone(TONE_HZ, SECONDS, rate),
        rate=rate,
        codec=codec,
        layout=layout,
        codec_options=options,
    )


def assert_is_the_tone(pcm: npt.NDArray[np.int16]) -> None:
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    assert abs(len(pcm) - SECONDS * SAMPLE_RATE) <= LENGTH_TOLERANCE
    # A sample rate taken wrongly would move the pitch (44.1 kHz read as 48 kHz: 1000 Hz -> 1088 Hz).
    assert dominant_frequency(pcm) == pytest.approx(TONE_HZ, abs=2.0)
    assert 0.3 * 32767 < np.max(np.abs(pcm)) < 32767


def test_wav_at_44_1_khz_stereo_is_resampled_to_48_khz_mono(tmp_path: Path) -> None:
    assert_is_the_tone(load_pcm(encoded(tmp_path, "tone.wav", "pcm_s16le", 44_100, "stereo")))


def test_wav_already_in_the_device_format_is_taken_as_is(tmp_path: Path) -> None:
    path = encoded(tmp_path, "tone.wav", "pcm_s16le", SAMPLE_RATE, "mono")
    expected = np.round(tone(TONE_HZ, SECONDS, SAMPLE_RATE) * 32767).astype(np.int16)
    np.testing.assert_array_equal(load_pcm(path), expected)


def test_flac_at_96_khz_mono_is_resampled_to_48_khz(tmp_path: Path) -> None:
    assert_is_the_tone(load_pcm(encoded(tmp_path, "tone.flac", "flac", 96_000, "mono")))


def test_ogg_vorbis_is_decoded(tmp_path: Path) -> None:
    encoder = vorbis_encoder()
    if encoder is None:
        pytest.skip("the bundled FFmpeg has no Vorbis encoder")
    codec, options = encoder
    assert_is_the_tone(load_pcm(encoded(tmp_path, "tone.ogg", codec, 44_100, "stereo", options)))


def test_ogg_opus_is_decoded(tmp_path: Path) -> None:
    assert_is_the_tone(load_pcm(encoded(tmp_path, "tone.opus", "libopus", SAMPLE_RATE, "stereo")))


def test_mp3_is_decoded(tmp_path: Path) -> None:
    assert_is_the_tone(load_pcm(encoded(tmp_path, "tone.mp3", "libmp3lame", 44_100, "stereo")))


def test_a_file_that_switches_from_stereo_to_mono_midway_is_decoded_whole(tmp_path: Path) -> None:
    if not has_encoder("libmp3lame"):
        pytest.skip("the bundled FFmpeg has no libmp3lame encoder")
    # Two MP3s without a Xing header, concatenated byte for byte, as careless tools do.
    no_header = {"write_xing": "0", "id3v2_version": "0"}
    parts = [
        write_audio(
            tmp_path / f"{layout}.mp3",
            tone(freq, SECONDS, 44_100),
            rate=44_100,
            codec="libmp3lame",
            layout=layout,
            container_options=no_header,
        ).read_bytes()
        for freq, layout in ((500.0, "stereo"), (1500.0, "mono"))
    ]
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(b"".join(parts))

    pcm = load_pcm(joined)

    assert 2 * SECONDS * SAMPLE_RATE <= len(pcm) <= (2 * SECONDS + 0.1) * SAMPLE_RATE
    assert dominant_frequency(pcm[: SAMPLE_RATE * 3 // 4]) == pytest.approx(500.0, abs=2.0)
    assert dominant_frequency(pcm[-SAMPLE_RATE * 3 // 4 :]) == pytest.approx(1500.0, abs=2.0)


def test_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(SoundFileError, match=r"nowhere\.wav: does not exist"):
        load_pcm(tmp_path / "nowhere.wav")


def test_directory_is_not_a_sound_file(tmp_path: Path) -> None:
    folder = tmp_path / "3-folder.wav"
    folder.mkdir()
    with pytest.raises(SoundFileError, match=r"3-folder\.wav: is not a regular file"):
        load_pcm(folder)


def test_zero_byte_file_is_reported_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.mp3"
    path.touch()
    with pytest.raises(SoundFileError, match=r"blank\.mp3: is empty"):
        load_pcm(path)


def test_bytes_of_no_known_format_are_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(4096)))
    with pytest.raises(SoundFileError, match=r"noise\.mp3: not an audio file FFmpeg can decode"):
        load_pcm(path)


def test_a_video_file_is_refused_as_video(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(SoundFileError, match=r"clip\.mkv: contains a video stream \(mpeg4\); only audio"):
        load_pcm(path)


def test_file_with_a_header_but_no_samples_is_empty(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "silent.wav", np.zeros(0), rate=SAMPLE_RATE, codec="pcm_s16le")
    with pytest.raises(SoundFileError, match=r"silent\.wav: contains no audio samples"):
        load_pcm(path)


def zero_middle_third(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(third)
    path.write_bytes(bytes(data))
    return path


def test_mp3_damaged_in_the_middle_is_corrupt(tmp_path: Path) -> None:
    path = zero_middle_third(encoded(tmp_path, "damaged.mp3", "libmp3lame", 44_100, "stereo"))
    with pytest.raises(SoundFileError, match=r"damaged\.mp3: corrupt or undecodable after 0\.\d\d s"):
        load_pcm(path)


def test_opus_whose_damaged_pages_are_skipped_is_refused(tmp_path: Path) -> None:
    # The Ogg demuxer drops pages that fail their checksum without an error; only the length tells.
    path = zero_middle_third(encoded(tmp_path, "damaged.opus", "libopus", SAMPLE_RATE, "stereo"))
    with pytest.raises(
        SoundFileError, match=r"damaged\.opus: damaged or truncated, only 0\.\d\d s of its 1\.01 s"
    ):
        load_pcm(path)


def test_mp3_cut_short_is_refused(tmp_path: Path) -> None:
    path = encoded(tmp_path, "cut.mp3", "libmp3lame", 44_100, "stereo")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SoundFileError, match=r"cut\.mp3: damaged or truncated, only 0\.50 s of its 1\.00 s"):
        load_pcm(path)


def test_file_longer_than_allowed_is_refused(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "long.wav", seconds=2.0)
    with pytest.raises(SoundFileError, match=r"long\.wav: longer than the 1\.5 s allowed"):
        load_pcm(path, max_seconds=1.5)


def test_file_just_under_the_limit_is_accepted(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "fits.wav", seconds=1.4)
    assert len(load_pcm(path, max_seconds=1.5)) == pytest.approx(1.4 * SAMPLE_RATE, abs=2)


def test_bytes_in_memory_decode_like_the_file_they_came_from(tmp_path: Path) -> None:
    path = encoded(tmp_path, "tone.flac", "flac", 44_100, "stereo")
    np.testing.assert_array_equal(decode_pcm_bytes(path.read_bytes(), "sound 'tone'"), load_pcm(path))


def test_mp3_bytes_in_memory_are_decoded(tmp_path: Path) -> None:
    data = encoded(tmp_path, "tone.mp3", "libmp3lame", 44_100, "stereo").read_bytes()
    assert_is_the_tone(decode_pcm_bytes(data, "sound 'tone'"))


def test_no_bytes_are_reported_empty_under_the_given_subject() -> None:
    with pytest.raises(SoundFileError, match=r"^sound 'blank': is empty \(0 bytes\)$"):
        decode_pcm_bytes(b"", "sound 'blank'")


def test_bytes_of_no_known_format_say_ffmpeg_cannot_decode_them() -> None:
    noise = bytes((i * 7919 + 13) % 251 for i in range(4096))
    with pytest.raises(SoundFileError, match=r"^sound 'noise': not an audio file FFmpeg can decode \(.+\)$"):
        decode_pcm_bytes(noise, "sound 'noise'")


def test_bytes_of_a_video_are_refused_as_video(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(SoundFileError, match=r"^sound 'clip': contains a video stream \(mpeg4\)"):
        decode_pcm_bytes(path.read_bytes(), "sound 'clip'")


def test_bytes_longer_than_allowed_are_refused(tmp_path: Path) -> None:
    data = write_tone(tmp_path / "long.wav", seconds=2.0).read_bytes()
    with pytest.raises(SoundFileError, match=r"^sound 'long': longer than the 1\.5 s allowed$"):
        decode_pcm_bytes(data, "sound 'long'", max_seconds=1.5)


def test_mp3_bytes_cut_short_are_refused(tmp_path: Path) -> None:
    data = encoded(tmp_path, "cut.mp3", "libmp3lame", 44_100, "stereo").read_bytes()
    with pytest.raises(
        SoundFileError, match=r"^sound 'cut': damaged or truncated, only 0\.50 s of its 1\.00 s"
    ):
        decode_pcm_bytes(data[: len(data) // 2], "sound 'cut'")
