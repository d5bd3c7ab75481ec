"""Draws the LED map (docs/led-map.png) from actors.leds, so the picture cannot drift from the code.

Run: .venv/bin/python -m docs.led_map [output.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from actors.leds import (
    STATUS_BUSY,
    STATUS_ERROR,
    STATUS_IDLE,
    STATUS_PLAYING,
    STATUS_SERVER_LEAVING,
    LedFrame,
    mode_leds,
    render,
)
from actors.state import DeviceState, Fault, Playback
from media.library import MAX_MODES

CELL = 56
LABEL_WIDTH = 250
BACKGROUND = (32, 34, 38)
UNLIT = (70, 72, 78)
TEXT = (235, 235, 235)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def _rgb(rgba: int) -> tuple[int, int, int]:
    return (rgba >> 24) & 0xFF, (rgba >> 16) & 0xFF, (rgba >> 8) & 0xFF


def _draw_led(draw: ImageDraw.ImageDraw, index: int, x: int, y: int, rgba: int) -> None:
    """led_1 is a dot; led_2..led_5 are a square, a rhombus, a triangle and a circle."""
    fill = _rgb(rgba) if rgba else UNLIT
    r, cx, cy = CELL // 2 - 10, x + CELL // 2, y + CELL // 2
    if index == 1:
        draw.ellipse((cx - r // 2, cy - r // 2, cx + r // 2, cy + r // 2), fill=fill)
    elif index == 2:
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif index == 3:
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif index == 4:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    else:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)


def rows() -> list[tuple[str, LedFrame]]:
    status = [
        (f"idle ({STATUS_IDLE.name})", render(DeviceState())),
        (f"playing ({STATUS_PLAYING.name})", render(DeviceState(playing=Playback(1, 0)))),
        (f"error ({STATUS_ERROR.name})", render(DeviceState(fault=Fault.RECOVERED))),
        (f"busy: Play refused ({STATUS_BUSY.name})", render(DeviceState(busy=True))),
        (f"server leaving ({STATUS_SERVER_LEAVING.name})", (STATUS_SERVER_LEAVING.rgba, *mode_leds(0))),
    ]
    modes = [(f"mode {mode}", (STATUS_IDLE.rgba, *mode_leds(mode))) for mode in range(MAX_MODES)]
    return status + modes


def render_map(path: Path) -> None:
    entries = rows()
    header = 40
    image = Image.new("RGB", (LABEL_WIDTH + 5 * CELL + 20, header + CELL * len(entries) + 20), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(18)
    for column, name in enumerate(("led_1", "led_2", "led_3", "led_4", "led_5")):
        draw.text((LABEL_WIDTH + column * CELL + 6, 12), name, fill=TEXT, font=_font(13))
    for row, (label, leds) in enumerate(entries):
        y = header + row * CELL
        draw.text((16, y + CELL // 2 - 10), label, fill=TEXT, font=font)
        for column, rgba in enumerate(leds):
            _draw_led(draw, column + 1, LABEL_WIDTH + column * CELL, y, rgba)
    image.save(path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).with_name("led-map.png")
    render_map(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
