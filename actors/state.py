"""A device's state and how buttons and playback outcomes change it: pure functions, no threads."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from media.transport import PlaybackEnd


class Button(enum.Enum):
    CONNECT = "connect"
    MODE = "mode"
    STOP = "stop"
    PLAY = "play"


class Gesture(enum.Enum):
    PRESS = "press"
    HOLD = "hold"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class ButtonInput:
    button: Button
    gesture: Gesture = Gesture.PRESS


class Fault(enum.Enum):
    """Why led_1 shows the error colour."""

    AUDIO_LOST = "the audio stream closed while the device stayed connected"
    RECOVERED = "the device actor failed and was restarted from its last state"


@dataclass(frozen=True, slots=True)
class Playback:
    id: int
    mode: int
    sound: str | None = None
    """A sound chosen by name (an operator's play or announcement); None plays the mode's sound."""


@dataclass(frozen=True, slots=True)
class DeviceState:
    mode: int = 0
    playing: Playback | None = None
    next_playback_id: int = 1
    fault: Fault | None = None
    busy: bool = False
    """A Play was just refused because the server carries all the audio it can keep on time."""

    def fitted_to(self, modes: int) -> DeviceState:
        """A state restored under a configuration with fewer modes starts over at mode 0."""
        return self if self.mode < modes else replace(self, mode=0)

    def at_rest(self) -> DeviceState:
        """What a device resumes with after a disconnect: same mode, nothing playing, no fault."""
        return replace(self, playing=None, fault=None, busy=False)


@dataclass(frozen=True, slots=True)
class StartPlayback:
    playback: Playback


@dataclass(frozen=True, slots=True)
class StopPlayback:
    playback: Playback
    reason: PlaybackEnd


Effect = StartPlayback | StopPlayback


@dataclass(frozen=True, slots=True)
class Transition:
    state: DeviceState
    effects: tuple[Effect, ...] = ()
    accepted: bool = True


def on_button(state: DeviceState, event: ButtonInput, modes: int) -> Transition:
    """The button map.

    PRESS: Mode cycles the modes, Play starts the current mode's sound (preempting any
    playback), Stop ends playback. HOLD: Mode returns to mode 0, Stop acts as a press,
    Play has no long-press action. RELEASE ends a gesture and changes nothing. Connect is
    handled on the device and never acted on here. Unaccepted events are acked false.
    An accepted event ends a "busy" notice.
    """
    transition = _on_button(state, event, modes)
    if transition.accepted and transition.state.busy:
        return Transition(replace(transition.state, busy=False), transition.effects)
    return transition


def starts_new_stream(before: DeviceState, transition: Transition) -> bool:
    """The transition would add a stream to the server's audio load (a preemption only replaces one)."""
    return before.playing is None and any(isinstance(e, StartPlayback) for e in transition.effects)


def on_play_refused(state: DeviceState) -> Transition:
    """Admission control refused a new stream: nothing plays, led_1 shows busy for a moment."""
    return Transition(replace(state, busy=True), accepted=False)


def on_busy_shown(state: DeviceState) -> Transition:
    """The busy notice has been shown long enough."""
    return Transition(replace(state, busy=False))


def _on_button(state: DeviceState, event: ButtonInput, modes: int) -> Transition:
    button, gesture = event.button, event.gesture
    if button is Button.CONNECT:
        return Transition(state, accepted=False)
    if gesture is Gesture.RELEASE:
        return Transition(state)
    if button is Button.MODE:
        mode = (state.mode + 1) % modes if gesture is Gesture.PRESS else 0
        return Transition(replace(state, mode=mode, fault=_cleared(state.fault)))
    if button is Button.STOP:
        return _stop(state, PlaybackEnd.STOPPED)
    if gesture is Gesture.HOLD:
        return Transition(state, accepted=False)
    return _play(state)


@dataclass(frozen=True, slots=True)
class SetMode:
    mode: int


@dataclass(frozen=True, slots=True)
class PlaySound:
    """Play the mode's sound (``sound`` None) or a named one; ``interrupt`` False leaves a playing
    device alone (an announcement that must not cut a sound short)."""

    sound: str | None = None
    mode: int | None = None
    interrupt: bool = True


@dataclass(frozen=True, slots=True)
class StopSound:
    pass


Command = SetMode | PlaySound | StopSound
"""What an operator asks of a device: the same changes its buttons make, by value."""


def on_command(state: DeviceState, command: Command, modes: int) -> Transition:
    """An operator's command, decided like a press: Mode sets a mode (clearing a past failure),
    Play preempts what plays (unless told not to interrupt: then it is refused), Stop ends
    playback. ``command`` is already validated (mode in range, sound known)."""
    transition = _on_command(state, command, modes)
    if transition.accepted and transition.state.busy:
        return Transition(replace(transition.state, busy=False), transition.effects)
    return transition


def _on_command(state: DeviceState, command: Command, modes: int) -> Transition:
    match command:
        case SetMode(mode=mode):
            if not 0 <= mode < modes:
                return Transition(state, accepted=False)
            return Transition(replace(state, mode=mode, fault=_cleared(state.fault)))
        case PlaySound(interrupt=False) if state.playing is not None:
            return Transition(state, accepted=False)
        case PlaySound(sound=sound, mode=mode):
            return _play(state, sound=sound, mode=state.mode if mode is None else mode)
        case StopSound():
            return _stop(state, PlaybackEnd.STOPPED)


def on_playback_ended(state: DeviceState, playback_id: int, end: PlaybackEnd) -> Transition:
    """The transport finished (or dropped) a playback; only the current one matters. One shed to
    keep the other streams on time shows busy for a moment, as a refused Play does."""
    if state.playing is None or state.playing.id != playback_id:
        return Transition(state)
    return Transition(replace(state, playing=None, busy=state.busy or end is PlaybackEnd.SHED))


def on_audio_lost(state: DeviceState) -> Transition:
    stopped = _stop(state, PlaybackEnd.DISCONNECTED)
    return Transition(replace(stopped.state, fault=Fault.AUDIO_LOST), stopped.effects)


def on_audio_restored(state: DeviceState) -> Transition:
    fault = None if state.fault is Fault.AUDIO_LOST else state.fault
    return Transition(replace(state, fault=fault))


def on_disconnect(state: DeviceState) -> Transition:
    """A stream of the device went away: the speaker may be gone, so playback stops."""
    return _stop(state, PlaybackEnd.DISCONNECTED)


def _play(state: DeviceState, sound: str | None = None, mode: int | None = None) -> Transition:
    playback = Playback(id=state.next_playback_id, mode=state.mode if mode is None else mode, sound=sound)
    effects: tuple[Effect, ...] = (StartPlayback(playback),)
    if state.playing is not None:
        effects = (StopPlayback(state.playing, PlaybackEnd.PREEMPTED), *effects)
    new_state = replace(
        state, playing=playback, next_playback_id=playback.id + 1, fault=_cleared(state.fault)
    )
    return Transition(new_state, effects)


def _stop(state: DeviceState, reason: PlaybackEnd) -> Transition:
    if state.playing is None:
        return Transition(state)
    return Transition(replace(state, playing=None), (StopPlayback(state.playing, reason),))


def _cleared(fault: Fault | None) -> Fault | None:
    """A successful action clears a past failure; a missing audio stream stays visible."""
    return fault if fault is Fault.AUDIO_LOST else None
