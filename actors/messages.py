"""Messages between the gRPC layer and the actors: immutable values, sent with ``tell``.

Replies travel through a ``reply`` callable that the sender supplies, so an actor never
blocks on its caller and the gRPC layer never blocks its event loop on an actor.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from actors.lease import Lease
from actors.ports import CloseCause, DeviceLink
from actors.state import ButtonInput, Command, DeviceState
from media.transport import PlaybackEnd


class StreamKind(enum.Enum):
    STATUS = "status"
    EVENTS = "events"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class StreamGrant:
    link: DeviceLink
    session: int
    stream: int


class Refusal(enum.Enum):
    """Why a stream is refused; the gRPC layer picks the status code from it."""

    DRAINING = "draining"
    FULL = "full"
    BUSY = "busy"
    """Connects are arriving faster than the server can answer them in time."""
    STORE_DOWN = "store-down"
    """The store cannot be reached (or failed reading or writing this device's record), so the
    device cannot be served safely now."""


@dataclass(frozen=True, slots=True)
class StreamRefused:
    reason: str
    why: Refusal


class CommandOutcome(enum.Enum):
    """How an operator's command ended; the API picks its reply from it."""

    APPLIED = "applied"
    """A connected device took the new mode."""
    DESIRED = "desired"
    """The device is offline: the mode is kept and applied when it reconnects."""
    STARTED = "started"
    STOPPED = "stopped"
    IDLE = "idle"
    """Stop, with nothing playing."""
    OFFLINE = "offline"
    BUSY = "busy"
    """Something plays and the command was not to interrupt it."""
    REFUSED = "refused"
    """Admission control refused the stream: the server streams all it can keep on time."""
    UNKNOWN = "unknown"
    """The server has never seen this device."""
    INVALID = "invalid"
    """The command does not fit the device (a mode or sound that does not exist)."""
    FAILED = "failed"
    """The new state could not be saved; nothing the device resumes with has changed."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    outcome: CommandOutcome
    state: DeviceState | None = None
    """The device's state after the command, when its actor decided it."""


OpenReply = Callable[[StreamGrant | StreamRefused], None]
AckReply = Callable[[bool], None]


# Supervisor inbox.


@dataclass(frozen=True, slots=True)
class OpenStream:
    device_id: str
    peer: str
    kind: StreamKind
    reply: OpenReply


@dataclass(frozen=True, slots=True)
class LeaseEnded:
    """The lease is over (another server holds the device now): end the session that holds it
    without saving its state. A session of a newer lease is left alone."""

    lease: Lease

    @property
    def device_id(self) -> str:
        return self.lease.device_id


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """A stream's call is over, whoever ended it. The supervisor forgets the stream, and passes the
    message on to the device actor when the device lost that kind of stream but stays connected."""

    device_id: str
    session: int
    stream: int
    kind: StreamKind


@dataclass(frozen=True, slots=True)
class RouteButton:
    device_id: str
    session: int
    input: ButtonInput
    reply: AckReply
    received_at: float | None = None
    """time.monotonic() when the event reached the server, to measure button→LED latency."""


@dataclass(frozen=True, slots=True)
class RouteCommand:
    """An operator's command for one device, routed like a button event: to its actor if it is
    connected, kept as the desired mode (or refused) if it is not."""

    device_id: str
    command: Command
    reply: Callable[[CommandResult], None]


@dataclass(frozen=True, slots=True)
class PlaybackEnded:
    """The transport ended a playback; the supervisor passes it on to the device's current actor."""

    device_id: str
    playback_id: int
    end: PlaybackEnd


@dataclass(frozen=True, slots=True)
class StateChanged:
    device_id: str
    actor_urn: str
    state: DeviceState


@dataclass(frozen=True, slots=True)
class Retired:
    """A device actor's answer to ``Retire``: its final state, for the supervisor to save."""

    device_id: str
    actor_urn: str
    state: DeviceState


@dataclass(frozen=True, slots=True)
class DeviceFailed:
    device_id: str
    actor_urn: str
    state: DeviceState
    error: str


class RemovalOutcome(enum.Enum):
    """How an operator's removal of a device's record ended; the API picks its reply from it."""

    REMOVED = "removed"
    CONNECTED = "connected"
    """The device is connected here: its record stays."""
    KEPT = "kept"
    """The store kept the record: another server holds the device, or it had just been seen."""
    FAILED = "failed"
    """The store failed while removing the record; it may still be there."""


@dataclass(frozen=True, slots=True)
class RemoveDevice:
    """An operator's request to forget a device that is not connected: its state, tags and
    desired mode. A device that connects afterwards is a new one."""

    device_id: str
    reply: Callable[[RemovalOutcome], None]


@dataclass(frozen=True, slots=True)
class SweepRecords:
    """Delete the records of the devices not seen within the retention, as of ``now``."""

    now: float
    reply: Callable[[frozenset[str]], None]


@dataclass(frozen=True, slots=True)
class FleetStatus:
    connected: int
    restarts: int
    retiring: int = 0
    """Devices whose actors were told to retire and have not yet handed over their final state."""


@dataclass(frozen=True, slots=True)
class DescribeFleet:
    reply: Callable[[FleetStatus], None]


@dataclass(frozen=True, slots=True)
class Drain:
    """The server is going away: stop all playback and show the leaving pattern."""


@dataclass(frozen=True, slots=True)
class RetireAll:
    """The server is stopping: retire every device and answer once each final state is saved, or
    once ``timeout`` seconds have passed, naming the devices whose actors did not hand theirs over."""

    timeout: float
    reply: Callable[[tuple[str, ...]], None]


# Device inbox.


@dataclass(frozen=True, slots=True)
class ButtonPressed:
    input: ButtonInput
    reply: AckReply
    received_at: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceCommand:
    command: Command
    reply: Callable[[CommandResult], None]


@dataclass(frozen=True, slots=True)
class StreamOpened:
    kind: StreamKind
    replaced: bool = False
    """The device already had a stream of this kind, and this newer one takes its place."""


@dataclass(frozen=True, slots=True)
class Retire:
    """The device's connection is over: stop playback, end the connection's streams for
    ``cause``, answer ``Retired`` with the state to resume, and stop."""

    cause: CloseCause
    reason: str


@dataclass(frozen=True, slots=True)
class BusyShown:
    """The busy notice of a refused Play has been shown long enough (unless a newer refusal renewed it)."""

    refusal: int


@dataclass(frozen=True, slots=True)
class ShowLeaving:
    pass
