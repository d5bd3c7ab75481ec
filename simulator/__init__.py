"""A headless device simulator: the real device client's behaviour on the wire, driven from asyncio."""

from simulator.buttons import Button, EventType, button_event
from simulator.call_status import StreamEnd
from simulator.device import (
    AudioLoopError,
    EventLostError,
    SimulatedDevice,
    StreamKind,
)
from simulator.leds import POWER_ON, Leds, format_leds, reported
from simulator.recording import Recording

__all__ = [
    "POWER_ON",
    "AudioLoopError",
    "Button",
    "EventLostError",
    "EventType",
    "Leds",
    "Recording",
    "SimulatedDevice",
    "StreamEnd",
    "StreamKind",
    "button_event",
    "format_leds",
    "reported",
]
