"""One device's actor: owns its state, decides what its LEDs show and what its speaker plays."""

from __future__ import annotations

import contextlib
import logging
from types import TracebackType
from typing import Any

import pykka

from actors import state as transitions
from actors.leds import LedFrame, render, server_leaving
from actors.logs import for_device
from actors.messages import (
    AttachLink,
    ButtonPressed,
    DeviceFailed,
    PlaybackEnded,
    PlaybackFinished,
    Retire,
    ShowLeaving,
    StateChanged,
    StreamClosed,
    StreamKind,
    StreamOpened,
)
from actors.observer import FleetObserver, PlaybackEnd
from actors.ports import DeviceLink, PlaybackEndCallback
from actors.runtime import PooledActor
from actors.state import DeviceState, PlaybackOutcome, StartPlayback, StopPlayback, StopReason, Transition
from actors.store import StateStore
from media.library import SoundLibrary

logger = logging.getLogger(__name__)

_PLAYBACK_ENDS = {
    StopReason.STOPPED: PlaybackEnd.STOPPED,
    StopReason.PREEMPTED: PlaybackEnd.PREEMPTED,
    StopReason.DISCONNECTED: PlaybackEnd.DISCONNECTED,
}


class DeviceActor(PooledActor):
    """Applies the pure transitions of ``actors.state`` and carries out their effects.

    Audio packets never pass through this actor: it tells the link's audio outlet to
    play or stop, and the transport moves the packets.
    """

    def __init__(
        self,
        device_id: str,
        state: DeviceState,
        link: DeviceLink,
        supervisor: pykka.ActorRef[Any],
        library: SoundLibrary,
        observer: FleetObserver | None = None,
        store: StateStore | None = None,
    ) -> None:
        super().__init__()
        self.device_id = device_id
        self.state = state
        self._link = link
        self._supervisor = supervisor
        self._library = library
        self._shown: LedFrame | None = None
        self._leaving = False
        self._observer = observer or FleetObserver()
        self._store = store
        self._log = for_device(logger, device_id)

    def on_start(self) -> None:
        self._show(self._frame())

    def on_receive(self, message: Any) -> Any:
        match message:
            case ButtonPressed(input=event, reply=reply, received_at=received_at):
                accepted = False
                try:
                    transition = transitions.on_button(self.state, event, self._library.modes)
                    self._apply(transition, caused_at=received_at)
                    accepted = transition.accepted
                finally:
                    reply(accepted)
                self._log.debug(
                    "%s %s -> %s",
                    event.button.value,
                    event.gesture.value,
                    "accepted" if accepted else "refused",
                )
            case PlaybackFinished(playback_id=playback_id, outcome=outcome):
                current = self.state.playing is not None and self.state.playing.id == playback_id
                if current and outcome is PlaybackOutcome.FINISHED:
                    self._observer.playback_ended(PlaybackEnd.COMPLETED)
                self._apply(transitions.on_playback_ended(self.state, playback_id, outcome))
            case StreamOpened(kind=StreamKind.AUDIO):
                self._apply(transitions.on_audio_restored(self.state))
            case StreamOpened():
                pass
            case StreamClosed(kind=StreamKind.AUDIO):
                self._apply(transitions.on_audio_lost(self.state))
            case StreamClosed():
                self._apply(transitions.on_disconnect(self.state))
            case AttachLink(link=link):
                self._apply(transitions.on_disconnect(self.state))
                self._link = link
                self._shown = None
                self._show(self._frame())
            case ShowLeaving():
                self._leaving = True
                self._apply(transitions.on_disconnect(self.state))
            case Retire():
                self._apply(transitions.on_disconnect(self.state))
                return self.state.at_rest()
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
        self._supervisor.tell(DeviceFailed(self.device_id, self.actor_urn, self.state, repr(exception_value)))

    def _apply(self, transition: Transition, caused_at: float | None = None) -> None:
        for effect in transition.effects:
            match effect:
                case StopPlayback(reason=reason):
                    self._link.audio.stop()
                    self._observer.playback_ended(_PLAYBACK_ENDS[reason])
                case StartPlayback(playback=playback):
                    sound = self._library.for_mode(playback.mode)
                    self._link.audio.play(sound, self._end_notifier(playback.id))
                    self._observer.playback_started()
        if transition.state != self.state:
            if self._store is not None and _durable(transition.state) != _durable(self.state):
                # Saved before the event is acked: an acked press survives even a SIGKILL.
                self._store.save(self.device_id, transition.state)
            self.state = transition.state
            self._supervisor.tell(StateChanged(self.device_id, self.actor_urn, self.state))
        self._show(self._frame(), caused_at)

    def _frame(self) -> LedFrame:
        """Once the server is going away, the device keeps showing so until it is disconnected."""
        return server_leaving(self.state) if self._leaving else render(self.state)

    def _show(self, leds: LedFrame, caused_at: float | None = None) -> None:
        if leds != self._shown:
            self._shown = leds
            self._link.leds.show(leds, caused_at)

    def _end_notifier(self, playback_id: int) -> PlaybackEndCallback:
        """The transport calls this from the event loop; it goes through the supervisor so
        that a restarted actor still hears about the playback its predecessor started."""
        supervisor, device_id = self._supervisor, self.device_id

        def notify(outcome: PlaybackOutcome) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                supervisor.tell(PlaybackEnded(device_id, playback_id, outcome))

        return notify


def _durable(state: DeviceState) -> tuple[int, int]:
    """The part of a state that a reconnect or a restart resumes."""
    return state.mode, state.next_playback_id
