"""Sound files, on disk or uploaded, turned into the one PCM format Opus takes: only audio, only
from their own bytes.

Decoding and resampling are left to FFmpeg (through PyAV), so the sample-rate conversion is a proper
band-limited one; but FFmpeg also reads playlists, scripts and images, so a file is first judged by
its bytes (media.probe) and opened only as one of the accepted audio formats (media.formats), from
memory, with every attempt to open another file or address refused. Untrusted files are decoded in
a child process with limits (media.sandbox), which calls this module.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Disposition, Stream

from media.formats import accepted_codec, accepted_format, accepted_formats_text, format_whitelist
from media.opus import SAMPLE_RATE
from media.probe import PROBE_BYTES, detect_format
from media.probe import load as load_probe

# A file decoding to this much (and this fraction) less than its header declares is taken as damaged;
# a smaller shortfall is codec padding or an approximate duration estimate.
_SHORTFALL_S = 0.25
_SHORTFALL_RATIO = 0.05

DEFAULT_MAX_SECONDS = 900.0
"""The longest sound accepted unless the caller says otherwise: 15 min, about 86 MB of PCM to decode."""

ANALYZE_MICROSECONDS = 1_000_000
"""How much of the file FFmpeg may read to learn its streams (default 5 s): audio needs a frame or two."""

MAX_STREAMS = 8
"""A sound has one audio stream, perhaps a cover picture; FFmpeg's default allows 1,000."""


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

    FFmpeg gets the open file's bytes, never its path, exactly as it gets an upload's: it has no
    directory to look around in.
    """
    subject = f"sound file {path}"
    with open_sound_file(path) as file:
        return np.concatenate(decode_pcm_chunks(file, subject, max_seconds))


def open_sound_file(path: Path) -> BinaryIO:
    """A sound file opened for reading, or a SoundFileError naming it and what is wrong."""
    if not path.exists():
        raise SoundFileError(f"sound file {path}: does not exist")
    if not path.is_file():
        raise SoundFileError(f"sound file {path}: is not a regular file")
    try:
        file = path.open("rb")
    except OSError as exc:
        raise SoundFileError(f"sound file {path}: cannot be read ({exc.strerror})") from None
    if os.fstat(file.fileno()).st_size == 0:
        file.close()
        raise SoundFileError(f"sound file {path}: is empty (0 bytes)")
    return file


def decode_pcm_bytes(
    data: bytes, subject: str, max_seconds: float = DEFAULT_MAX_SECONDS
) -> npt.NDArray[np.int16]:
    """Decode a whole sound file held in memory to 48 kHz mono int16.

    `subject` opens every SoundFileError message (e.g. "sound 'doorbell'"). Decoding stops as soon as
    the file proves longer than max_seconds, so an hour-long file fails fast instead of filling memory.
    Safe to call from any thread: nothing is shared between calls.
    """
    return np.concatenate(decode_pcm_chunks(data, subject, max_seconds))


def decode_pcm_chunks(
    source: bytes | BinaryIO, subject: str, max_seconds: float = DEFAULT_MAX_SECONDS
) -> list[npt.NDArray[np.int16]]:
    """decode_pcm_bytes in the pieces FFmpeg gave, so a caller that encodes them need not join them.

    `source` is the file's bytes or a seekable binary file holding them (read from its start).
    """
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    head = file.read(PROBE_BYTES)
    file.seek(0)
    if not head:
        raise SoundFileError(f"{subject}: is empty (0 bytes)")
    container = _open_audio(file, head, subject)
    with container:
        stream = _the_audio_stream(container, subject)
        declared_s = _declared_seconds(stream)
        if declared_s is not None and declared_s > max_seconds + _SHORTFALL_S:
            # Refused from the header before decoding: a small file may declare hours of silence.
            raise SoundFileError(f"{subject}: longer than the {max_seconds:g} s allowed")
        output, decoded_s = _decode_stream(container, stream, subject, max_seconds)
    if output.samples == 0:
        raise SoundFileError(f"{subject}: contains no audio samples")
    if declared_s is not None and declared_s - decoded_s > max(_SHORTFALL_S, _SHORTFALL_RATIO * declared_s):
        # Demuxers skip damaged pages or stop at a cut without an error; the header still knows better.
        raise SoundFileError(
            f"{subject}: damaged or truncated, only {decoded_s:.2f} s of its {declared_s:.2f} s decode"
        )
    return output.chunks


def _open_audio(file: BinaryIO, head: bytes, subject: str) -> InputContainer:
    """Open the file as the accepted audio format its first bytes (`head`) are, or refuse it saying
    what it is."""
    detected = detect_format(head)
    if detected is None:
        raise SoundFileError(f"{subject}: not an audio file FFmpeg can decode (no known format)")
    if not accepted_format(detected.name):
        raise SoundFileError(
            f"{subject}: {detected.name} ({detected.long_name}) is not an accepted audio format;"
            f" accepted: {accepted_formats_text()}"
        )
    refused: list[str] = []

    def refuse_to_open(url: str, flags: int, options: Mapping[str, Any]) -> None:
        refused.append(url)
        raise PermissionError(f"{url}: a sound file may not open anything else")

    try:
        # Tags in a stray encoding must not stop the audio from being used.
        return av.open(
            file,
            "r",
            format=detected.name,
            container_options=_open_options(),
            metadata_errors="replace",
            io_open=refuse_to_open,
        )
    except MemoryError:
        raise  # FFmpeg's ENOMEM too: the sandbox's limit, not a fault of the file
    except (av.error.FFmpegError, PermissionError) as exc:
        if refused:
            raise SoundFileError(f"{subject}: refers to another file or address ({refused[0]})") from None
        raise SoundFileError(f"{subject}: not an audio file FFmpeg can decode ({_reason(exc)})") from exc


def _the_audio_stream(container: InputContainer, subject: str) -> AudioStream:
    """The first audio stream, if the file is audio alone (a cover picture aside) in an accepted codec."""
    for stream in container.streams:
        if stream.type == "video" and not stream.disposition & Disposition.attached_pic:
            raise SoundFileError(
                f"{subject}: contains a video stream ({_codec_name(stream)}); only audio files are accepted"
            )
    if not container.streams.audio:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams at all"
        raise SoundFileError(
            f"{subject}: contains no audio stream (read as {container.format.name}: {kinds})"
        )
    stream = container.streams.audio[0]
    codec = _codec_name(stream)
    if not accepted_codec(codec):
        raise SoundFileError(f"{subject}: its audio is {codec}, which is not an accepted audio codec")
    return stream


def _decode_stream(
    container: InputContainer, stream: AudioStream, subject: str, max_seconds: float
) -> tuple[_ToDeviceFormat, float]:
    max_samples = int(max_seconds * SAMPLE_RATE)
    output = _ToDeviceFormat()
    decoded_s = 0.0
    try:
        for frame in container.decode(stream):
            output.push(frame)
            decoded_s += frame.samples / frame.sample_rate
            if output.samples > max_samples:
                raise SoundFileError(f"{subject}: longer than the {max_seconds:g} s allowed")
        output.flush()
    except MemoryError:
        raise
    except av.error.FFmpegError as exc:
        raise SoundFileError(
            f"{subject}: corrupt or undecodable after {decoded_s:.2f} s ({_reason(exc)})"
        ) from exc
    if output.samples > max_samples:
        raise SoundFileError(f"{subject}: longer than the {max_seconds:g} s allowed")
    return output, decoded_s


@functools.cache
def _open_options() -> dict[str, str]:
    """The demuxer's limits: small probes, no protocols (the bytes come from memory), and only the
    accepted formats and audio decoders, should anything try to open others."""
    return {
        "probesize": str(PROBE_BYTES),
        "analyzeduration": str(ANALYZE_MICROSECONDS),
        "max_streams": str(MAX_STREAMS),
        "format_whitelist": format_whitelist(),
        "protocol_whitelist": "none",
        "codec_whitelist": ",".join(_accepted_decoders()),
    }


def _accepted_decoders() -> list[str]:
    """FFmpeg's decoders (`mp3float`, `aac_fixed`, ...) of the accepted codecs, for `codec_whitelist`."""
    decoders = []
    for name in sorted(av.codecs_available):
        try:
            codec = av.Codec(name, "r")
        except (av.error.FFmpegError, ValueError):
            continue
        if codec.type == "audio" and accepted_codec(codec.canonical_name):
            decoders.append(codec.name)
    return decoders


def _codec_name(stream: Stream) -> str:
    context = stream.codec_context
    return context.codec.canonical_name if context is not None else "an unknown codec"


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


def prepare() -> None:
    """Do now what decoding would look up on first use (libavformat's probe, the decoder list), so a
    process that limits itself afterwards needs no file for it."""
    load_probe()
    _open_options()
