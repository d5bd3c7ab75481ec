"""One device's actor: owns its state, decides what its LEDs show and what its speaker plays."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from types import TracebackType
from typing import Any

import pykka

from actors import state as transitions
from actors.commit import GroupCommit
from actors.lease import Lease
from actors.leds import LedFrame, render, server_leaving
from actors.logs import DeviceLogger, for_device
from actors.messages import (
    BusyShown,
    ButtonPressed,
    CommandOutcome,
    CommandResult,
    DeviceCommand,
    DeviceFailed,
    PlaybackEnded,
    Retire,
    Retired,
    ShowLeaving,
    StateChanged,
    StreamClosed,
    StreamKind,
    StreamOpened,
)
from actors.news import FleetListener
from actors.observer import FleetObserver
from actors.ports import DeviceLink, PlaybackEndCallback, Sounds
from actors.runtime import ActorRuntime, PooledActor, tell_if_alive
from actors.state import (
    Command,
    DeviceState,
    Playback,
    PlaySound,
    SetMode,
    StartPlayback,
    StopPlayback,
    StopSound,
    Transition,
)
from media.admission import StreamAdmission, Ticket
from media.library import EncodedSound
from media.transport import PlaybackEnd

logger = logging.getLogger(__name__)

BUSY_SHOWN_SECONDS = 3.0
"""How long led_1 shows busy after the last refused Play. A device pressing Play again meanwhile
keeps it lit: a refusal then costs no LED change at all, which matters when an overloaded
server is refusing hundreds of retries a second."""


class DeviceActor(PooledActor):
    """Applies the pure transitions of ``actors.state`` and carries out their effects.

    Audio packets never pass through this actor: it tells the link's audio outlet to
    play or stop, and the transport moves the packets. A press that changes what a reconnect
    resumes is acked once the store has it (group commit), never before.
    """

    def __init__(
        self,
        runtime: ActorRuntime,
        device_id: str,
        state: DeviceState,
        link: DeviceLink,
        supervisor: pykka.ActorRef[Any],
        library: Sounds,
        observer: FleetObserver | None = None,
        store: GroupCommit | None = None,
        admission: StreamAdmission | None = None,
        news: FleetListener | None = None,
        lease: Lease | None = None,
    ) -> None:
        super().__init__(runtime)
        self.device_id = device_id
        self._lease = lease
        """The session's lease: every save it makes carries it, whatever the store holds later."""
        self.state = state
        self._link = link
        self._supervisor = supervisor
        self._library = library
        self._shown: LedFrame | None = None
        self._leaving = False
        self._observer = observer or FleetObserver()
        self._store = store
        self._admission = admission or StreamAdmission()
        self._news = news if news is not None else FleetListener()
        self._sound: str | None = None
        """The name of the sound playing now."""
        self._refusals = 0

    @cached_property
    def _log(self) -> DeviceLogger:
        """Made on the first line logged: an idle device's actor keeps no logger adapter."""
        return for_device(logger, self.device_id)

    def on_start(self) -> None:
        self._show(self._frame())

    def on_receive(self, message: Any) -> Any:
        match message:
            case ButtonPressed(input=event, reply=reply, received_at=received_at):
                replied = False
                try:
                    transition, ticket = self._admit(
                        transitions.on_button(self.state, event, self._library.modes)
                    )
                    accepted = transition.accepted
                    durable = self._apply(transition, caused_at=received_at, ticket=ticket)
                    if durable is None:
                        replied = True
                        reply(accepted)
                    else:
                        replied = True  # the commit answers: acked once the new state is saved
                        durable.append(lambda saved: reply(accepted and saved))
                finally:
                    if not replied:
                        reply(False)
                self._log.debug(
                    "%s %s -> %s",
                    event.button.value,
                    event.gesture.value,
                    "accepted" if transition.accepted else "refused",
                )
            case DeviceCommand(command=command, reply=answer):
                self._command(command, answer)
            case BusyShown(refusal=refusal):
                if self.state.busy and refusal == self._refusals:
                    self._apply(transitions.on_busy_shown(self.state))
            case PlaybackEnded(playback_id=playback_id, end=end):
                current = self.state.playing is not None and self.state.playing.id == playback_id
                if current and end in (PlaybackEnd.COMPLETED, PlaybackEnd.SHED):
                    self._observer.playback_ended(end)
                if current and end is PlaybackEnd.SHED:
                    self._log.info("playback shed to keep the other streams on time")
                    self._show_busy_for_a_while()
                self._apply(transitions.on_playback_ended(self.state, playback_id, end))
            case StreamOpened(kind=StreamKind.AUDIO, replaced=replaced):
                if replaced:  # a reconnected device did not hear the start of what was playing
                    self._apply(transitions.on_disconnect(self.state))
                self._apply(transitions.on_audio_restored(self.state))
            case StreamOpened():
                pass
            case StreamClosed(kind=StreamKind.AUDIO):
                self._apply(transitions.on_audio_lost(self.state))
            case StreamClosed():
                self._apply(transitions.on_disconnect(self.state))
            case ShowLeaving():
                self._leaving = True
                self._apply(transitions.on_disconnect(self.state))
            case Retire(cause=cause, reason=reason):
                self._apply(transitions.on_disconnect(self.state))
                final = self.state.at_rest()
                self._link.close(cause, reason)
                tell_if_alive(self._supervisor, Retired(self.device_id, self.actor_urn, final))
                self._log.info("disconnected; mode %d kept", final.mode)
                self.stop()
            case _:
                self._log.warning("ignoring unknown message %r", message)
        return None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._log.error("actor failed: %r", exception_value, exc_info=exception_value)
        tell_if_alive(
            self._supervisor, DeviceFailed(self.device_id, self.actor_urn, self.state, repr(exception_value))
        )

    def _admit(self, transition: Transition) -> tuple[Transition, Ticket | None]:
        """A transition that starts a stream needs admission's ticket; refused, nothing plays and
        led_1 shows busy for a moment."""
        if not any(isinstance(effect, StartPlayback) for effect in transition.effects):
            return transition, None
        ticket = self._admission.admit(replacing=self.state.playing is not None)
        if ticket is not None:
            return transition, ticket
        self._show_busy_for_a_while()
        return transitions.on_play_refused(self.state), None

    def _show_busy_for_a_while(self) -> None:
        """Busy stays lit until BUSY_SHOWN_SECONDS after the last refusal (or shedding)."""
        self._refusals += 1
        self.runtime.call_later(BUSY_SHOWN_SECONDS, tell_if_alive, self.actor_ref, BusyShown(self._refusals))

    def _command(self, command: Command, reply: Callable[[CommandResult], None]) -> None:
        """An operator's command: decided as a press is, answered once what it changed is saved."""
        replied = False
        try:
            wanted = command.sound if isinstance(command, PlaySound) else None
            if wanted is not None and self._library.named(wanted) is None:
                replied = True
                reply(CommandResult(CommandOutcome.INVALID, self.state))
                return
            was_playing = self.state.playing is not None
            transition = transitions.on_command(self.state, command, self._library.modes)
            transition, ticket = self._admit(transition)
            outcome = _outcome(command, transition, was_playing)
            durable = self._apply(transition, ticket=ticket)
            result = CommandResult(outcome, self.state)
            replied = True
            if durable is None:
                reply(result)
            else:
                failed = CommandResult(CommandOutcome.FAILED, self.state)
                durable.append(lambda saved: reply(result if saved else failed))
            # Debug: a fleet-wide announcement logs one line with the counts (admin.app), not one a device.
            self._log.debug("operator %s: %s", type(command).__name__, outcome.value)
        finally:
            if not replied:
                reply(CommandResult(CommandOutcome.FAILED, self.state))

    def _apply(
        self, transition: Transition, caused_at: float | None = None, ticket: Ticket | None = None
    ) -> list[Callable[[bool], None]] | None:
        """Carry out the effects and take the new state; a list to hear when it is durable, if it
        changed what a reconnect resumes (the list's callables run once the store has it)."""
        try:
            for effect in transition.effects:
                match effect:
                    case StopPlayback(reason=reason):
                        self._link.audio.stop()
                        self._observer.playback_ended(reason)
                    case StartPlayback(playback=playback):
                        sound = self._sound_of(playback)
                        self._link.audio.play(sound, self._end_notifier(playback.id, ticket))
                        self._sound = sound.name
                        ticket = None
                        self._observer.playback_started()
        finally:
            if ticket is not None:  # admitted, but nothing started after all
                ticket.release()
        durable: list[Callable[[bool], None]] | None = None
        if transition.state != self.state:
            if self._store is not None and _durable(transition.state) != _durable(self.state):
                # Saved before the event is acked: an acked press survives even a SIGKILL.
                # The caller adds its ack to this list only once _apply has returned, so if
                # anything below fails the commit acks nothing and the caller nacks once.
                durable = []
                self._store.save(self.device_id, transition.state, _run_all(durable), self._lease)
            self.state = transition.state
            tell_if_alive(self._supervisor, StateChanged(self.device_id, self.actor_urn, self.state))
            if self.state.playing is None:
                self._sound = None
            self._news.device_changed(self.device_id, self.state, self._sound)
        self._show(self._frame(), caused_at)
        return durable

    def _sound_of(self, playback: Playback) -> EncodedSound:
        """A sound removed since the command was decided falls back to the mode's own."""
        if playback.sound is not None:
            sound = self._library.named(playback.sound)
            if sound is not None:
                return sound
        return self._library.for_mode(playback.mode)

    def _frame(self) -> LedFrame:
        """Once the server is going away, the device keeps showing so until it is disconnected."""
        return server_leaving(self.state) if self._leaving else render(self.state)

    def _show(self, leds: LedFrame, caused_at: float | None = None) -> None:
        if leds != self._shown:
            self._shown = leds
            self._link.leds.show(leds, caused_at)

    def _end_notifier(self, playback_id: int, ticket: Ticket | None) -> PlaybackEndCallback:
        """The transport calls this from the event loop once the playback ends, however it ends:
        its admission ticket goes back, and the news goes through the supervisor so that a
        restarted actor still hears about the playback its predecessor started."""
        supervisor, device_id = self._supervisor, self.device_id

        def notify(end: PlaybackEnd) -> None:
            if ticket is not None:
                ticket.release()
            tell_if_alive(supervisor, PlaybackEnded(device_id, playback_id, end))

        return notify


def _outcome(command: Command, transition: Transition, was_playing: bool) -> CommandOutcome:
    match command:
        case SetMode():
            return CommandOutcome.APPLIED if transition.accepted else CommandOutcome.INVALID
        case PlaySound():
            if transition.state.busy:
                return CommandOutcome.REFUSED
            return CommandOutcome.STARTED if transition.accepted else CommandOutcome.BUSY
        case StopSound():
            return CommandOutcome.STOPPED if was_playing else CommandOutcome.IDLE


def _durable(state: DeviceState) -> tuple[int, int]:
    """The part of a state that a reconnect or a restart resumes."""
    return state.mode, state.next_playback_id


def _run_all(callbacks: list[Callable[[bool], None]]) -> Callable[[bool], None]:
    def run(saved: bool) -> None:
        for callback in callbacks:
            callback(saved)

    return run
