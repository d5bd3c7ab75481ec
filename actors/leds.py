"""The LED map: what led_1..led_5 show for a device state. Pure functions.

led_0 is the device's own power LED and is never driven. led_1 shows the device's
state by colour. led_2..led_5 (square, rhombus, triangle, circle) show the mode: exactly
one shape is lit, the shape is ``mode % 4`` and its colour is ``MODE_COLOURS[mode // 4]``,
so every mode up to ``MAX_MODES`` looks different. The device shows ``rgba >> 8`` and
ignores intensity, so states differ by colour, never by intensity alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.state import DeviceState
from media.library import MAX_MODES

LedFrame = tuple[int, int, int, int, int]
"""0xRRGGBBAA colours of led_1..led_5."""

OFF = 0x00000000


def rgba(rgb: int, intensity: int = 0xFF) -> int:
    return (rgb << 8) | intensity


@dataclass(frozen=True, slots=True)
class Swatch:
    name: str
    rgba: int


STATUS_IDLE = Swatch("green", rgba(0x00C000))
STATUS_PLAYING = Swatch("blue", rgba(0x0050FF))
STATUS_ERROR = Swatch("red", rgba(0xFF0000))
STATUS_SERVER_LEAVING = Swatch("amber", rgba(0xFFA000))
STATUS_BUSY = Swatch("pink", rgba(0xFF4080))

MODE_SHAPES = ("square", "rhombus", "triangle", "circle")
MODE_COLOURS = (
    Swatch("orange", rgba(0xFF6000)),
    Swatch("magenta", rgba(0xFF00C0)),
    Swatch("cyan", rgba(0x00E0FF)),
    Swatch("yellow", rgba(0xFFF000)),
    Swatch("white", rgba(0xFFFFFF)),
    Swatch("violet", rgba(0x8000FF)),
)


def status_swatch(state: DeviceState) -> Swatch:
    """Error wins over busy, busy over playing, playing over idle: a fault must never hide."""
    if state.fault is not None:
        return STATUS_ERROR
    if state.busy:
        return STATUS_BUSY
    if state.playing is not None:
        return STATUS_PLAYING
    return STATUS_IDLE


def mode_swatch(mode: int) -> tuple[str, Swatch]:
    if not 0 <= mode < MAX_MODES:
        raise ValueError(f"mode {mode} is outside 0..{MAX_MODES - 1}")
    return MODE_SHAPES[mode % len(MODE_SHAPES)], MODE_COLOURS[mode // len(MODE_SHAPES)]


def mode_leds(mode: int) -> tuple[int, int, int, int]:
    shape, swatch = mode_swatch(mode)
    lit = MODE_SHAPES.index(shape)
    leds = [OFF] * len(MODE_SHAPES)
    leds[lit] = swatch.rgba
    return leds[0], leds[1], leds[2], leds[3]


def render(state: DeviceState) -> LedFrame:
    return (status_swatch(state).rgba, *mode_leds(state.mode))


def server_leaving(state: DeviceState) -> LedFrame:
    """Shown while the server drains: the device should expect to reconnect elsewhere."""
    return (STATUS_SERVER_LEAVING.rgba, *mode_leds(state.mode))
