"""Which files are sounds: the audio containers and codecs accepted, by FFmpeg's own names.

FFmpeg demuxes far more than audio: playlists and scripts that open other files or network
addresses (concat, HLS, SDP), image sequences that decode to gigabytes. Everything not named
here is refused before a demuxer runs, so a file's bytes are only ever read as one of these.
"""

from __future__ import annotations

ACCEPTED_FORMATS: dict[str, str] = {
    "wav": "WAV",
    "aiff": "AIFF",
    "flac": "FLAC",
    "mp3": "MP3",
    "ogg": "Ogg (Opus, Vorbis, FLAC)",
    "aac": "AAC (ADTS)",
    "mov,mp4,m4a,3gp,3g2,mj2": "M4A/MP4 audio",
    "matroska,webm": "WebM/Matroska audio",
}
"""FFmpeg demuxer name (as probing reports it) -> what the operator calls it. None of these
opens anything but its own input unless told to (the MP4 demuxer's external references are
off by default)."""

ACCEPTED_CODECS = frozenset(
    {
        "aac",
        "alac",
        "flac",
        "mp2",
        "mp3",
        "opus",
        "vorbis",
        "pcm_alaw",
        "pcm_mulaw",
        "pcm_u8",
        "pcm_s8",
        "pcm_s16le",
        "pcm_s16be",
        "pcm_s24le",
        "pcm_s24be",
        "pcm_s32le",
        "pcm_s32be",
        "pcm_f32le",
        "pcm_f32be",
        "pcm_f64le",
        "pcm_f64be",
    }
)
"""Audio codecs decoded, by FFmpeg's codec name (not the decoder's: `mp3`, not `mp3float`)."""


def accepted_format(demuxer: str) -> bool:
    return demuxer in ACCEPTED_FORMATS


def accepted_codec(codec: str) -> bool:
    return codec in ACCEPTED_CODECS


def accepted_formats_text() -> str:
    """The accepted formats as an operator reads them, for refusal messages."""
    return ", ".join(ACCEPTED_FORMATS.values())


def format_whitelist() -> str:
    """FFmpeg's `format_whitelist` option: the same names, comma-separated (a second lock on the door)."""
    return ",".join(ACCEPTED_FORMATS)
