"""The device's buttons and the DeviceEvent messages a press turns into."""

from __future__ import annotations

import enum
from typing import cast

from rpc import comms_pb2


class Button(enum.IntEnum):
    """Physical buttons by their label; the values are the wire ids (proto3 ButtonEvent.ButtonId)."""

    CONNECT = comms_pb2.ButtonEvent.BUTTON_1
    MODE = comms_pb2.ButtonEvent.BUTTON_2
    STOP = comms_pb2.ButtonEvent.BUTTON_3
    PLAY = comms_pb2.ButtonEvent.BUTTON_4


class EventType(enum.IntEnum):
    """What happened to a button; long-press (HOLD) detection happens on the device."""

    PRESS = comms_pb2.ButtonEvent.PRESS
    HOLD = comms_pb2.ButtonEvent.HOLD
    RELEASE = comms_pb2.ButtonEvent.RELEASE


def button_event(button: int, event: int = EventType.PRESS) -> comms_pb2.DeviceEvent:
    """Build the DeviceEvent for a button; any int is accepted because proto3 enums are open on the wire.

    Tests use that to send ids the server does not know (e.g. 7) exactly as a newer firmware would.
    """
    return comms_pb2.DeviceEvent(
        button_event=comms_pb2.ButtonEvent(
            button_id=cast("comms_pb2.ButtonEvent.ButtonId", int(button)),
            event=cast("comms_pb2.ButtonEvent.ButtonEventType", int(event)),
        )
    )
