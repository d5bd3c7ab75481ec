"""Built-in sounds, so a server with no sound files still gives every mode its own recognisable sound.

Each mode gets a different melody, register, rhythm and timbre, so a person standing next to a device
can tell by ear which mode it is in. Modes 0-4 are hand-written; higher modes are derived from the
mode number. Everything is computed from the mode number alone (no random generator), so the sounds
are identical on every start-up and every platform.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from media.opus import SAMPLE_RATE

DEFAULT_LONG_MODE = 1
"""The mode whose built-in sound lasts over half a minute, long enough to try Stop on."""

PEAK_DBFS = -6.0
_PEAK = 10.0 ** (PEAK_DBFS / 20.0)
_NYQUIST_GUARD = 0.45 * SAMPLE_RATE
"""Partials above this are dropped rather than aliased."""

_Float = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class _Timbre:
    partials: tuple[tuple[float, float, float], ...]
    """(frequency ratio, amplitude, exponential decay per second) of each partial."""
    attack_s: float
    release_s: float


# Soft bell: inharmonic partials that die away faster than the fundamental.
_BELL = _Timbre(((1.0, 1.0, 2.2), (2.0, 0.32, 3.5), (2.76, 0.2, 5.0), (5.4, 0.06, 9.0)), 0.004, 0.05)
# Bright pluck: harmonic, short.
_PLUCK = _Timbre(((1.0, 1.0, 9.0), (2.0, 0.4, 14.0), (3.0, 0.16, 20.0), (4.0, 0.08, 26.0)), 0.002, 0.03)
# Soft organ: harmonic, nearly sustained, slow attack.
_ORGAN = _Timbre(((1.0, 1.0, 0.35), (2.0, 0.5, 0.5), (3.0, 0.28, 0.7), (4.0, 0.12, 0.9)), 0.03, 0.08)
# Reed / square-ish: odd harmonics only, staccato.
_REED = _Timbre(((1.0, 1.0, 5.0), (3.0, 0.33, 6.0), (5.0, 0.2, 8.0), (7.0, 0.14, 10.0)), 0.004, 0.03)
# Tubular chime: low, long ring, slightly stretched partials.
_CHIME = _Timbre(
    ((1.0, 1.0, 1.1), (2.0, 0.55, 1.7), (3.0, 0.3, 2.5), (4.16, 0.18, 3.4), (5.43, 0.08, 5.0)), 0.003, 0.1
)
# Marimba: strong fundamental with the characteristic fourth partial, quick decay.
_MARIMBA = _Timbre(((1.0, 1.0, 6.0), (3.93, 0.35, 16.0), (9.8, 0.08, 30.0)), 0.002, 0.03)
# Woodblock tick, the steady pulse under the long melody.
_TICK = _Timbre(((1.0, 1.0, 35.0), (2.31, 0.5, 50.0), (3.7, 0.2, 70.0)), 0.001, 0.02)


@dataclass(frozen=True, slots=True)
class _Note:
    start_s: float
    midi: float
    length_s: float
    timbre: _Timbre
    gain: float = 1.0


def _hz(midi: float) -> float:
    return 440.0 * math.pow(2.0, (midi - 69.0) / 12.0)


def _render_note(note: _Note) -> _Float:
    n = max(1, round(note.length_s * SAMPLE_RATE))
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    out = np.zeros(n, dtype=np.float64)
    base = _hz(note.midi)
    for ratio, amplitude, decay in note.timbre.partials:
        freq = base * ratio
        if freq < _NYQUIST_GUARD:
            out += amplitude * np.exp(-decay * t) * np.sin(2.0 * math.pi * freq * t)
    # Raised-cosine ramps at both ends: a note never starts or stops on a non-zero sample (no clicks).
    for ramp_s, direction in ((note.timbre.attack_s, 1), (note.timbre.release_s, -1)):
        ramp = min(n // 2, max(1, round(ramp_s * SAMPLE_RATE)))
        out[::direction][:ramp] *= 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, ramp))
    return note.gain * out


def _mix(notes: Sequence[_Note]) -> npt.NDArray[np.int16]:
    end = max(round((note.start_s + note.length_s) * SAMPLE_RATE) for note in notes)
    buffer = np.zeros(end + 1, dtype=np.float64)
    for note in notes:
        rendered = _render_note(note)
        start = round(note.start_s * SAMPLE_RATE)
        buffer[start : start + len(rendered)] += rendered
    buffer *= _PEAK / np.max(np.abs(buffer))
    return np.round(buffer * 32767.0).astype(np.int16)


def _rising_arpeggio() -> list[_Note]:
    # C major arpeggio C5 E5 G5 C6 on a soft bell; the top note rings on.
    midis = (72, 76, 79, 84)
    return [_Note(i * 0.22, m, 1.4 if i == len(midis) - 1 else 0.8, _BELL) for i, m in enumerate(midis)]


# (semitones above A3, beats) — eight four-beat bars in A minor.
_LONG_MELODY = (
    (0, 2), (3, 1), (7, 1), (5, 2), (3, 1), (2, 1), (0, 1), (2, 1), (3, 1), (5, 1), (7, 4),
    (8, 2), (7, 1), (5, 1), (3, 2), (5, 1), (7, 1), (2, 1), (3, 1), (2, 1), (-2, 1), (0, 4),
)  # fmt: skip


def _long_melody(beat_s: float = 1.0) -> list[_Note]:
    """A slow tune over a steady woodblock pulse, long enough that Stop is needed to end it."""
    notes: list[_Note] = []
    beat = 0
    for offset, beats in _LONG_MELODY:
        notes.append(_Note(beat * beat_s, 57 + offset, beats * beat_s, _ORGAN, 0.8))
        beat += beats
    # One tick per beat, the first of each bar accented and higher; one more tick closes the tune.
    for b in range(beat + 1):
        accent = b % 4 == 0
        notes.append(_Note(b * beat_s, 83 if accent else 78, 0.15, _TICK, 0.6 if accent else 0.4))
    return notes


def _fast_descending() -> list[_Note]:
    # A high pentatonic run from E7 down to C6, three times, then C6 rings.
    run = (100, 98, 96, 93, 91, 88, 86, 84)
    step = 0.085
    notes = [_Note(i * step, m, 0.3, _PLUCK) for i, m in enumerate(run * 3)]
    notes.append(_Note(len(run) * 3 * step, 84, 0.6, _PLUCK))
    return notes


def _low_chime() -> list[_Note]:
    # Ding-dong: G3 then E-flat3, long ringing tubular chime.
    return [_Note(0.0, 55, 2.2, _CHIME), _Note(1.0, 51, 2.3, _CHIME)]


def _rhythmic_reed() -> list[_Note]:
    # Syncopated 3+3+2 pattern on sixteenths at 120 BPM, staccato reed around D4-C5.
    sixteenth = 0.125
    pattern = ((0, 62), (3, 62), (6, 69), (8, 62), (10, 65), (11, 67), (14, 69),
               (16, 62), (19, 62), (22, 72), (24, 69), (26, 67), (27, 65))  # fmt: skip
    notes = [_Note(step * sixteenth, m, 0.16, _REED, 1.0 if step % 8 == 0 else 0.75) for step, m in pattern]
    notes.append(_Note(28 * sixteenth, 62, 0.4, _REED))
    return notes


_SCALES: tuple[tuple[int, ...], ...] = (
    (0, 2, 4, 5, 7, 9, 11),  # major
    (0, 2, 3, 5, 7, 8, 10),  # natural minor
    (0, 2, 4, 7, 9),  # major pentatonic
    (0, 3, 5, 7, 10),  # minor pentatonic
    (0, 2, 4, 6, 8, 10),  # whole tone
    (0, 2, 3, 5, 7, 9, 10),  # dorian
    (0, 1, 4, 5, 7, 8, 10),  # phrygian dominant
)
_CONTOURS: tuple[Callable[[int, int], int], ...] = (
    lambda i, n: i,  # rising
    lambda i, n: n - 1 - i,  # falling
    lambda i, n: i // 2 + (i % 2) * 2,  # up two, down one
    lambda i, n: 2 * min(i, n - 1 - i),  # arch
    lambda i, n: abs(2 * i - n),  # valley
    lambda i, n: (i * 3) % 7,  # leaps
)
_RHYTHMS: tuple[tuple[float, ...], ...] = (
    (1.0,),  # even
    (1.5, 0.5),  # dotted
    (1.0, 1.0, 2.0),  # short-short-long
    (0.5, 0.5, 1.0),  # quick pairs
    (2.0, 1.0, 1.0),  # long-short-short
)
_TIMBRES = (_BELL, _PLUCK, _ORGAN, _REED, _MARIMBA, _CHIME)


def _procedural(mode: int) -> list[_Note]:
    """Root, scale, contour, rhythm, tempo and timbre each follow the mode number with a different
    period (36, 7, 6, 5, 7 and 36), so neighbouring modes differ in nearly all of them and no two modes
    below 210 share them all."""
    base = 45 + (mode * 11) % 36  # A2..G#5, a different root for every mode of a 36-mode cycle
    scale = _SCALES[mode % len(_SCALES)]
    contour = _CONTOURS[mode % len(_CONTOURS)]
    rhythm = _RHYTHMS[mode % len(_RHYTHMS)]
    timbre = _TIMBRES[(mode + mode // 6) % len(_TIMBRES)]
    unit = 0.1 + 0.03 * ((mode * 3) % 7)  # 0.10..0.28 s per rhythm unit
    span = 1.2 + 0.25 * ((mode * 2) % 7)  # 1.2..2.7 s of notes, then the last one rings
    count = max(4, int(span / (unit * sum(rhythm) / len(rhythm))))
    raw = [contour(i, count) for i in range(count)]
    # Keep the tune within about an octave and a half of its root, however many notes it has.
    top = len(scale) + 3
    degrees = [round(d * top / max(raw)) for d in raw] if max(raw) > top else raw
    notes: list[_Note] = []
    start = 0.0
    for i, degree in enumerate(degrees):
        midi = base + scale[degree % len(scale)] + 12 * (degree // len(scale))
        beats = rhythm[i % len(rhythm)]
        last = i == count - 1
        length = 0.9 if last else max(beats * unit, 0.25 if timbre in (_BELL, _CHIME) else 0.12)
        notes.append(_Note(start, midi, length, timbre, 1.0 if i % len(rhythm) == 0 else 0.8))
        start += beats * unit
    return notes


_HAND_WRITTEN: tuple[Callable[[], list[_Note]], ...] = (
    _rising_arpeggio,
    _long_melody,
    _fast_descending,
    _low_chime,
    _rhythmic_reed,
)


def default_pcm(mode: int) -> npt.NDArray[np.int16]:
    """The built-in sound of a mode: 48 kHz mono int16, peaking at -6 dBFS, the same on every call."""
    if mode < 0:
        raise ValueError(f"mode must be >= 0, got {mode}")
    notes = _HAND_WRITTEN[mode]() if mode < len(_HAND_WRITTEN) else _procedural(mode)
    return _mix(notes)
