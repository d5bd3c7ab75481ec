"""From the device's ButtonEvent to the actors' ButtonInput."""

from __future__ import annotations

from actors.state import Button, ButtonInput, Gesture
from rpc import comms_pb2 as pb

_BUTTONS = {
    pb.ButtonEvent.BUTTON_1: Button.CONNECT,
    pb.ButtonEvent.BUTTON_2: Button.MODE,
    pb.ButtonEvent.BUTTON_3: Button.STOP,
    pb.ButtonEvent.BUTTON_4: Button.PLAY,
}
_GESTURES = {
    pb.ButtonEvent.PRESS: Gesture.PRESS,
    pb.ButtonEvent.HOLD: Gesture.HOLD,
    pb.ButtonEvent.RELEASE: Gesture.RELEASE,
}


class UnsupportedEvent(ValueError):
    """An event the server cannot act on; it is acked false."""


def button_input_of(event: pb.DeviceEvent) -> ButtonInput:
    kind = event.WhichOneof("event")
    if kind is None:
        raise UnsupportedEvent("event carries no known kind (empty or newer oneof)")
    button_event = event.button_event
    button = _BUTTONS.get(button_event.button_id)
    if button is None:
        raise UnsupportedEvent(f"unknown button id {button_event.button_id}")
    gesture = _GESTURES.get(button_event.event)
    if gesture is None:
        raise UnsupportedEvent(f"unknown button event type {button_event.event}")
    return ButtonInput(button, gesture)
