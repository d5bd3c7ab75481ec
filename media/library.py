"""The sound of every mode, Opus-encoded once at start-up so streaming to a device only copies packets."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.decode import SoundFileError
from media.opus import FRAME_DURATIONS_MS, OpusEncoder
from media.sandbox import DecodeJob, DecodeSandbox
from media.sound import EncodedSound as EncodedSound
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
    `<mode>-<label>.<ext>` (e.g. `3.flac`, `0-doorbell.mp3`; an accepted audio format, media.formats) replaces the
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
    from_files = _encode_files(files, frame_ms)

    sounds: list[EncodedSound] = []
    for mode in range(modes):
        sound = from_files.get(mode) or encode_sound(built_in_name(mode), default_pcm(mode), frame_ms)
        logger.info(
            "mode %d plays %s (%.2f s, %d packets)", mode, sound.name, sound.duration, len(sound.packets)
        )
        sounds.append(sound)
    return SoundLibrary(frame_ms, tuple(sounds), OpusEncoder(frame_ms).silence_packet())


def encode_sound(name: str, pcm: npt.NDArray[np.int16], frame_ms: int) -> EncodedSound:
    """Opus-encode one sound once, so playing it later only copies packets."""
    # A fresh encoder per sound: its first packet then matches the fresh decoder a device starts
    # every recording with, instead of continuing from the end of the previous sound.
    packets = OpusEncoder(frame_ms).encode(pcm)
    return EncodedSound(name=name, frame_ms=frame_ms, packets=packets, samples=len(pcm))


def _encode_files(files: dict[int, Path], frame_ms: int) -> dict[int, EncodedSound]:
    """The sounds-dir files, decoded as uploads are: the same accepted formats, in the same sandbox.

    They are the operator's own, but one rule is simpler to trust than two, and the sandbox's limits
    also catch an honest mistake (a film dropped in the folder) with a message rather than a stall.
    """
    modes = sorted(files)
    jobs = [DecodeJob(files[mode].stem, files[mode], frame_ms, f"sound file {files[mode]}") for mode in modes]
    results = DecodeSandbox().encode_blocking(jobs) if jobs else []
    encoded: dict[int, EncodedSound] = {}
    for mode, result in zip(modes, results, strict=True):
        if isinstance(result, SoundFileError):
            raise SoundConfigError(str(result)) from result
        encoded[mode] = result
    return encoded


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
