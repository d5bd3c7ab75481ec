"""The sound of every mode, Opus-encoded once at start-up so streaming to a device only copies packets."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.decode import SoundFileError, load_pcm
from media.opus import FRAME_DURATIONS_MS, SAMPLE_RATE, OpusEncoder
from media.synth import default_pcm

logger = logging.getLogger(__name__)

MAX_MODES = 24
"""The most modes a device can be configured with: the LED map (actors/leds.py) gives each one
its own look, four shapes in six colours."""

_SOUND_FILE_NAME = re.compile(r"(?P<mode>[0-9]+)(?:-(?P<label>.+))?\.(?P<ext>[^.]+)")
"""`<mode>.<ext>` or `<mode>-<label>.<ext>`, e.g. `3.flac` or `0-doorbell.mp3`."""

BUILT_IN_PREFIX = "builtin-"
"""Every built-in sound's name starts with this, and no other sound's may: sounds-dir names start with
a digit and uploads are refused it (media.catalog)."""


def built_in_name(mode: int) -> str:
    """The API name of a mode's built-in sound, e.g. `builtin-3`."""
    return f"{BUILT_IN_PREFIX}{mode}"


class SoundConfigError(ValueError):
    """The sounds directory cannot be used as configured; raised at start-up so the operator fixes it."""


@dataclass(frozen=True, slots=True)
class EncodedSound:
    name: str
    """The name the admin API knows it by: `builtin-1`, or a sound file's name without its extension."""
    frame_ms: int
    packets: tuple[bytes, ...] = field(repr=False)  # thousands of packets would drown any log line
    samples: int
    """Samples of the source at 48 kHz, before the last packet was padded to a whole frame."""

    @property
    def duration(self) -> float:
        """Seconds of the source sound."""
        return self.samples / SAMPLE_RATE

    @property
    def streamed_duration(self) -> float:
        """Seconds the device plays, the last frame's padding included: what pacing must wait for."""
        return len(self.packets) * self.frame_ms / 1000


@dataclass(frozen=True)
class SoundLibrary:
    frame_ms: int
    sounds: tuple[EncodedSound, ...]
    """Indexed by mode."""
    silence_packet: bytes
    """One frame of encoded silence, a valid packet to end a recording that is cut short."""

    @property
    def modes(self) -> int:
        return len(self.sounds)

    def for_mode(self, mode: int) -> EncodedSound:
        # A negative mode must not silently pick a sound from the end, as Python indexing would.
        if not 0 <= mode < len(self.sounds):
            raise IndexError(f"mode {mode} is out of range: the library has modes 0..{len(self.sounds) - 1}")
        return self.sounds[mode]

    def named(self, name: str) -> EncodedSound | None:
        """The library's sound called `name` (a mode's built-in or sounds-dir sound), or None."""
        return next((sound for sound in self.sounds if sound.name == name), None)


def build_library(modes: int, frame_ms: int = 20, sounds_dir: Path | None = None) -> SoundLibrary:
    """Encode the sound of each of `modes` modes once, in `frame_ms` Opus packets.

    Every mode has a built-in sound (media.synth). A file in `sounds_dir` named `<mode>.<ext>` or
    `<mode>-<label>.<ext>` (e.g. `3.flac`, `0-doorbell.mp3`; any format FFmpeg decodes) replaces the
    built-in sound of that mode. A built-in sound is named `builtin-<mode>`, a file by its name
    without the extension (`3`, `0-doorbell`). In that directory:

    - hidden files (leading dot) are ignored silently, and anything whose name does not start with a
      digit (README.md, notes.txt, subdirectories) is ignored with a warning;
    - these raise SoundConfigError, so a mistake is seen at start-up rather than as a wrong sound
      later: the directory is missing or not a directory; a name starting with digits but not of the
      form above (e.g. `3_bell.wav`, `3`); a mode number >= `modes`; two files for the same mode
      (`3.wav` and `03-bell.mp3`); a file that fails to decode.

    Raises ValueError when `modes` is not 1..24 or `frame_ms` is not an Opus frame duration.
    """
    if isinstance(modes, bool) or not isinstance(modes, int) or not 1 <= modes <= MAX_MODES:
        raise ValueError(f"modes must be an integer from 1 to {MAX_MODES}, got {modes!r}")
    if frame_ms not in FRAME_DURATIONS_MS:
        raise ValueError(f"frame duration must be one of {FRAME_DURATIONS_MS} ms, got {frame_ms!r}")
    files = _sound_files(sounds_dir, modes) if sounds_dir is not None else {}

    sounds: list[EncodedSound] = []
    for mode in range(modes):
        path = files.get(mode)
        if path is None:
            name, pcm = built_in_name(mode), default_pcm(mode)
        else:
            name, pcm = path.stem, _load(path)
        sound = encode_sound(name, pcm, frame_ms)
        logger.info("mode %d plays %s (%.2f s, %d packets)", mode, name, sound.duration, len(sound.packets))
        sounds.append(sound)
    return SoundLibrary(frame_ms, tuple(sounds), OpusEncoder(frame_ms).silence_packet())


def encode_sound(name: str, pcm: npt.NDArray[np.int16], frame_ms: int) -> EncodedSound:
    """Opus-encode one sound once, so playing it later only copies packets."""
    # A fresh encoder per sound: its first packet then matches the fresh decoder a device starts
    # every recording with, instead of continuing from the end of the previous sound.
    packets = OpusEncoder(frame_ms).encode(pcm)
    return EncodedSound(name=name, frame_ms=frame_ms, packets=packets, samples=len(pcm))


def _load(path: Path) -> npt.NDArray[np.int16]:
    try:
        return load_pcm(path)
    except SoundFileError as exc:
        raise SoundConfigError(str(exc)) from exc


def _sound_files(sounds_dir: Path, modes: int) -> dict[int, Path]:
    """Which file replaces which mode; every naming problem is found before anything is decoded."""
    if not sounds_dir.exists():
        raise SoundConfigError(f"sounds directory {sounds_dir} does not exist")
    if not sounds_dir.is_dir():
        raise SoundConfigError(f"sounds directory {sounds_dir} is not a directory")
    files: dict[int, Path] = {}
    for path in sorted(sounds_dir.iterdir()):
        name = path.name
        if name.startswith("."):
            continue
        if name[0] not in "0123456789":
            logger.warning("ignoring %s: a sound file's name must start with its mode number", path)
            continue
        match = _SOUND_FILE_NAME.fullmatch(name)
        if match is None or not path.is_file():
            raise SoundConfigError(
                f"{path}: a sound for a mode must be a file named <mode>.<ext> or <mode>-<label>.<ext>,"
                " e.g. 3.flac or 0-doorbell.mp3"
            )
        mode = int(match["mode"])
        if mode >= modes:
            raise SoundConfigError(f"{path}: mode {mode} does not exist, modes are 0..{modes - 1}")
        if mode in files:
            raise SoundConfigError(f"{files[mode]} and {path} are both sounds for mode {mode}; keep one")
        files[mode] = path
    return files
