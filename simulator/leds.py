"""The device's six LEDs: how a SET changes them and how a GET reports them."""

from __future__ import annotations

from rpc import comms_pb2

Leds = tuple[int, ...]
"""Six 0xRRGGBBAA values, led_0 (the power LED) first."""

LED_COUNT = 6
OFF = 0x00000000
POWER_ON = 0x00FF00FF
"""The colour the device gives its own power LED (led_0) at connect: full green."""
ALL_OFF: Leds = (OFF,) * LED_COUNT


def reported(rgba: int) -> int:
    """A GET reports each colour with full intensity (0xRRGGBBFF), as the real device does."""
    return (rgba & 0xFFFFFF00) | 0xFF


def apply_set(current: Leds, request: comms_pb2.DeviceStatusSet) -> Leds:
    """led_1..led_5 all take the SET's value at once (unset reads as 0 = off); led_0 keeps its own."""
    return (
        current[0],
        request.led_1.rgba,
        request.led_2.rgba,
        request.led_3.rgba,
        request.led_4.rgba,
        request.led_5.rgba,
    )


def device_status(leds: Leds) -> comms_pb2.DeviceStatus:
    """The answer to a GET: the six colours; no button is held and the battery is full."""
    colours = [comms_pb2.RGBAColor(rgba=reported(rgba)) for rgba in leds]
    released = comms_pb2.DeviceStatus.RELEASED
    return comms_pb2.DeviceStatus(
        led_0=colours[0],
        led_1=colours[1],
        led_2=colours[2],
        led_3=colours[3],
        led_4=colours[4],
        led_5=colours[5],
        button_1=released,
        button_2=released,
        button_3=released,
        button_4=released,
        battery_level=1.0,
    )


def format_leds(leds: Leds) -> str:
    """One row of hex colours (RRGGBBAA), led_0 first, for logs and the CLI."""
    return " ".join(f"{rgba:08X}" for rgba in leds)
