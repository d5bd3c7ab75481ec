"""Real sound files for the decoding and library tests, written with FFmpeg's own encoders via PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.codec.codec import UnknownCodecError

from media.opus import SAMPLE_RATE


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> npt.NDArray[np.float64]:
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    result: npt.NDArray[np.float64] = amplitude * np.sin(2 * np.pi * freq * t)
    return result


def write_audio(
    path: Path,
    signal: npt.NDArray[np.float64],
    *,
    rate: int,
    codec: str,
    layout: str = "mono",
    container_format: str | None = None,
    codec_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode a mono float signal in [-1, 1], copied to every channel of `layout`.

    PyAV converts the s16 input to whatever sample format and frame size the encoder wants.
    """
    pcm = np.round(signal * 32767).astype(np.int16)
    channels = av.AudioLayout(layout).nb_channels
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout, options=codec_options or {})
        assert isinstance(stream, AudioStream)
        container.start_encoding()
        if len(pcm):
            frame = av.AudioFrame.from_ndarray(
                np.repeat(pcm, channels).reshape(1, -1), format="s16", layout=layout
            )
            frame.sample_rate = rate
            frame.pts = 0
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_tone(
    path: Path,
    freq: float = 1000.0,
    seconds: float = 1.0,
    *,
    rate: int = 44_100,
    codec: str = "pcm_s16le",
    layout: str = "stereo",
) -> Path:
    return write_audio(path, tone(freq, seconds, rate), rate=rate, codec=codec, layout=layout)


def has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except UnknownCodecError:
        return False
    return True


def vorbis_encoder() -> tuple[str, dict[str, str]] | None:
    """libvorbis if the bundled FFmpeg has it, else FFmpeg's native (experimental) Vorbis encoder."""
    if has_encoder("libvorbis"):
        return "libvorbis", {}
    if has_encoder("vorbis"):
        return "vorbis", {"strict": "experimental"}
    return None


def dominant_frequency(pcm: npt.NDArray[np.int16], rate: int = SAMPLE_RATE) -> float:
    """The strongest frequency, to the nearest 1 Hz with a second of audio or more."""
    samples = pcm.astype(np.float64) * np.hanning(len(pcm))
    spectrum = np.abs(np.fft.rfft(samples, n=max(len(pcm), rate)))
    return float(np.argmax(spectrum) * rate / max(len(pcm), rate))
