"""Sound files supplied by the operator, on disk or uploaded, turned into the one PCM format Opus takes.

Decoding and resampling are left to FFmpeg (through PyAV), so any format it knows works and the
sample-rate conversion is a proper band-limited one.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream

from media.opus import SAMPLE_RATE

# A file decoding to this much (and this fraction) less than its header declares is taken as damaged;
# a smaller shortfall is codec padding or an approximate duration estimate.
_SHORTFALL_S = 0.25
_SHORTFALL_RATIO = 0.05

DEFAULT_MAX_SECONDS = 900.0
"""The longest sound accepted unless the caller says otherwise: 15 min, about 86 MB of PCM to decode."""


class SoundFileError(ValueError):
    """A sound file that cannot be used; the message names the file and the reason."""


class _ToDeviceFormat:
    """Resamples to 48 kHz mono s16, starting a fresh resampler whenever the input's format changes
    (concatenated MP3s, for one, can switch from stereo to mono mid-file)."""

    def __init__(self) -> None:
        self._resampler: AudioResampler | None = None
        self._source: tuple[str, str, int] | None = None
        self.chunks: list[npt.NDArray[np.int16]] = []
        self.samples = 0

    def push(self, frame: AudioFrame) -> None:
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is None or source != self._source:
            self.flush()
            self._resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            self._source = source
        self._keep(self._resampler.resample(frame))

    def flush(self) -> None:
        if self._resampler is not None:
            self._keep(self._resampler.resample(None))
            self._resampler = None

    def _keep(self, frames: list[AudioFrame]) -> None:
        for frame in frames:
            # Packed s16 mono comes out as shape (1, samples); copy so no decoder buffer is kept alive.
            chunk = np.array(frame.to_ndarray(), dtype=np.int16).reshape(-1)
            self.chunks.append(chunk)
            self.samples += len(chunk)


def load_pcm(path: Path, max_seconds: float = DEFAULT_MAX_SECONDS) -> npt.NDArray[np.int16]:
    """Decode the first audio stream of a file to 48 kHz mono int16.

    Decoding stops as soon as the file proves longer than max_seconds, so an hour-long file given by
    mistake fails fast instead of filling memory.
    """
    if not path.exists():
        raise SoundFileError(f"sound file {path}: does not exist")
    if not path.is_file():
        raise SoundFileError(f"sound file {path}: is not a regular file")
    if path.stat().st_size == 0:
        raise SoundFileError(f"sound file {path}: is empty (0 bytes)")
    return _decode(str(path), f"sound file {path}", max_seconds)


def decode_pcm_bytes(
    data: bytes, subject: str, max_seconds: float = DEFAULT_MAX_SECONDS
) -> npt.NDArray[np.int16]:
    """Decode a whole sound file held in memory (an upload) exactly as load_pcm decodes one on disk.

    `subject` opens every SoundFileError message (e.g. "sound 'doorbell'"), since there is no path to
    name. Safe to call from any thread: nothing is shared between calls.
    """
    if not data:
        raise SoundFileError(f"{subject}: is empty (0 bytes)")
    return _decode(io.BytesIO(data), subject, max_seconds)


def _decode(source: str | io.BytesIO, subject: str, max_seconds: float) -> npt.NDArray[np.int16]:
    """The one decode loop behind both entry points, so a file and an upload meet the same checks."""
    max_samples = int(max_seconds * SAMPLE_RATE)
    try:
        # Tags in a stray encoding must not stop the audio from being used.
        container = av.open(source, "r", metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise SoundFileError(f"{subject}: not an audio file FFmpeg can decode ({_reason(exc)})") from exc
    with container:
        if not container.streams.audio:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams at all"
            raise SoundFileError(
                f"{subject}: contains no audio stream (read as {container.format.name}: {kinds})"
            )
        stream = container.streams.audio[0]
        declared_s = _declared_seconds(stream)
        output = _ToDeviceFormat()
        decoded_s = 0.0
        try:
            for frame in container.decode(stream):
                output.push(frame)
                decoded_s += frame.samples / frame.sample_rate
                if output.samples > max_samples:
                    raise SoundFileError(f"{subject}: longer than the {max_seconds:g} s allowed")
            output.flush()
        except av.error.FFmpegError as exc:
            raise SoundFileError(
                f"{subject}: corrupt or undecodable after {decoded_s:.2f} s ({_reason(exc)})"
            ) from exc
    if output.samples > max_samples:
        raise SoundFileError(f"{subject}: longer than the {max_seconds:g} s allowed")
    if output.samples == 0:
        raise SoundFileError(f"{subject}: contains no audio samples")
    if declared_s is not None and declared_s - decoded_s > max(_SHORTFALL_S, _SHORTFALL_RATIO * declared_s):
        # Demuxers skip damaged pages or stop at a cut without an error; the header still knows better.
        raise SoundFileError(
            f"{subject}: damaged or truncated, only {decoded_s:.2f} s of its {declared_s:.2f} s decode"
        )
    return np.concatenate(output.chunks)


def _declared_seconds(stream: AudioStream) -> float | None:
    """The audio stream's own duration from the file's headers (not the container's, which may be a
    longer video's), or None when the file does not say."""
    if stream.duration is None or stream.duration <= 0 or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _reason(exc: Exception) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc)
