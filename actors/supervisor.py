"""The fleet's core: which devices are connected, over which connection, and who acts for them.

The supervisor creates a device's actor when the device opens its first stream, routes its
button events to it, retires it (keeping its state) when its last stream closes, and restarts
an actor that fails from its last state.

A device's session is its set of live streams, and the newest stream of each kind wins: a
stream of a kind the device already has replaces the older one (which ends ABORTED). That is
what survives an L7 proxy, where every stream may come from another TCP peer; a rebooted or
half-open device is taken over the same way, one kind at a time, as its new streams arrive.
It never waits for a device actor: it tells ``Retire``, and the actor answers ``Retired`` by
``tell`` with its final state, which the supervisor saves. Streams the device opens again
meanwhile wait for that answer (or for ``retire_timeout``), so the new actor starts from
the final state.

It cannot die of one bad message: every message is handled inside a guard, and one that fails
(the store raising in a load or a write, say) is answered with the failure and logged while
routing goes on. The fleet view it tells is guarded the same way: a listener that fails costs
its own update, never the routing. At shutdown ``RetireAll`` retires every device and answers
once each final state is saved (or its deadline passed), before anything is stopped.

Should it die all the same (a failure outside that guard), it is started again at once from
the same sessions (its ``SupervisorBook``): the device actors it knew, their streams and the
retires in progress. Everyone holds it through one ``SupervisorRef``, which then points at the
new incarnation, so nobody has to look it up again; the messages the dead one had not handled
yet are handed over. ``on_routing`` hears False while it cannot route and True once it can
again; past ``SUPERVISOR_MAX_RESTARTS`` deaths within ``SUPERVISOR_RESTART_WINDOW`` it stays
down (False) and the server reports NOT_SERVING, for an orchestrator to replace it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import pykka

from actors.commit import GroupCommit
from actors.device import DeviceActor
from actors.lease import STALE_EVICTION, Lease
from actors.logs import for_device
from actors.messages import (
    ButtonPressed,
    CommandOutcome,
    CommandResult,
    DescribeFleet,
    DeviceCommand,
    DeviceFailed,
    Drain,
    FleetStatus,
    LeaseEnded,
    OpenStream,
    PlaybackEnded,
    Refusal,
    RemovalOutcome,
    RemoveDevice,
    Retire,
    RetireAll,
    Retired,
    RouteButton,
    RouteCommand,
    ShowLeaving,
    StateChanged,
    StreamClosed,
    StreamGrant,
    StreamKind,
    StreamOpened,
    StreamRefused,
    SweepRecords,
)
from actors.news import FleetListener
from actors.observer import FleetObserver
from actors.ports import CloseCause, DeviceLink, LinkFactory, Sounds
from actors.records import RecordKeeper, RecordLimits
from actors.runtime import ActorRuntime, PooledActor, tell_if_alive
from actors.state import DeviceState, Fault, SetMode
from media.admission import StreamAdmission

logger = logging.getLogger(__name__)

SUPERVISOR_MAX_RESTARTS = 5
SUPERVISOR_RESTART_WINDOW = 60.0
"""Seconds within which more than ``SUPERVISOR_MAX_RESTARTS`` deaths leave the supervisor down."""


@dataclass(frozen=True)
class SupervisorPolicy:
    max_devices: int = 100_000
    max_restarts: int = 5
    restart_window: float = 60.0
    retire_timeout: float = 2.0
    records: RecordLimits = field(default_factory=RecordLimits)


@dataclass
class _Session:
    number: int
    link: DeviceLink
    streams: dict[int, StreamKind] = field(default_factory=dict)


@dataclass
class _Device:
    actor: pykka.ActorRef[Any]
    session: _Session
    state: DeviceState
    lease: Lease
    """What the session's saves carry, and what an eviction must name to end it."""
    # Lists, not deques: a deque's first block is ~0.7 KB, and there is one record per device.
    failures: list[float] = field(default_factory=list)


@dataclass
class _Retiring:
    """A device actor told to retire that has not answered yet, and the streams waiting for it."""

    actor_urn: str
    state: DeviceState
    lease: Lease
    waiting: list[OpenStream | RouteCommand | RemoveDevice] = field(default_factory=list)
    lease_ended: bool = False
    """Another server holds the device's lease: its final state here is stale and is not saved."""


@dataclass(frozen=True, slots=True)
class _RetireOverdue:
    device_id: str
    actor_urn: str


@dataclass(frozen=True, slots=True)
class _ShutdownOverdue:
    """``RetireAll``'s deadline: the devices still retiring then are saved as last known."""


@dataclass
class _Shutdown:
    reply: Callable[[tuple[str, ...]], None]
    overdue: list[str] = field(default_factory=list)
    """Devices whose actors did not hand over their final state in time."""


class _GuardedListener(FleetListener):
    """The fleet view as the actors tell it: a listener that raises loses that one update (logged);
    the caller, the supervisor or a device actor, goes on routing."""

    def __init__(self, listener: FleetListener) -> None:
        self._listener = listener

    def device_online(self, device_id: str, peer: str, state: DeviceState) -> None:
        try:
            self._listener.device_online(device_id, peer, state)
        except Exception:
            logger.exception("the fleet view failed to take device %s online", device_id)

    def device_changed(self, device_id: str, state: DeviceState, sound: str | None) -> None:
        try:
            self._listener.device_changed(device_id, state, sound)
        except Exception:
            logger.exception("the fleet view failed to take a change of device %s", device_id)

    def device_offline(self, device_id: str, state: DeviceState) -> None:
        try:
            self._listener.device_offline(device_id, state)
        except Exception:
            logger.exception("the fleet view failed to take device %s offline", device_id)

    def desired_mode(self, device_id: str, mode: int | None) -> None:
        try:
            self._listener.desired_mode(device_id, mode)
        except Exception:
            logger.exception("the fleet view failed to take the desired mode of device %s", device_id)

    def devices_removed(self, device_ids: frozenset[str]) -> None:
        try:
            self._listener.devices_removed(device_ids)
        except Exception:
            logger.exception("the fleet view failed to drop %d removed devices", len(device_ids))


@dataclass
class SupervisorBook:
    """What the supervisor knows of its sessions, kept outside any one incarnation: a supervisor
    started again after a death carries on from it."""

    devices: dict[str, _Device] = field(default_factory=dict)
    retiring: dict[str, _Retiring] = field(default_factory=dict)
    counter: int = 0
    """The last session or stream number given: numbers stay unique across incarnations."""
    restarts: int = 0
    """Device actors restarted after a failure."""
    draining: bool = False
    shutdown: _Shutdown | None = None
    deaths: list[float] = field(default_factory=list)
    """When incarnations died (monotonic seconds), within the restart window."""


class SupervisorRef(pykka.ActorRef[Any]):
    """The supervisor as everyone holds it: one reference that follows it across restarts.

    Pykka's own ``ActorRef`` reaches its actor through the inbox and the stopped flag it copied
    at start; this one copies them again from each new incarnation (on the runtime's thread)."""

    def __init__(self) -> None:  # no actor of its own to hand Pykka: each incarnation points it at itself
        pass

    def point_at(self, incarnation: pykka.ActorRef[Any]) -> None:
        self._actor_weakref = incarnation._actor_weakref
        self.actor_class = incarnation.actor_class
        self.actor_urn = incarnation.actor_urn
        self.actor_inbox = incarnation.actor_inbox
        self.actor_stopped = incarnation.actor_stopped


def start_supervisor(
    runtime: ActorRuntime,
    library: Sounds,
    store: GroupCommit,
    link_factory: LinkFactory,
    policy: SupervisorPolicy | None = None,
    observer: FleetObserver | None = None,
    admission: StreamAdmission | None = None,
    news: FleetListener | None = None,
    on_routing: Callable[[bool], None] | None = None,
) -> SupervisorRef:
    """The supervisor, kept running: started again from its sessions should it die."""
    handle = SupervisorRef()
    SupervisorActor.start(
        runtime,
        library,
        store,
        link_factory,
        policy,
        observer,
        admission,
        news,
        handle=handle,
        on_routing=on_routing,
    )
    return handle


class SupervisorActor(PooledActor):
    def __init__(
        self,
        runtime: ActorRuntime,
        library: Sounds,
        store: GroupCommit,
        link_factory: LinkFactory,
        policy: SupervisorPolicy | None = None,
        observer: FleetObserver | None = None,
        admission: StreamAdmission | None = None,
        news: FleetListener | None = None,
        *,
        book: SupervisorBook | None = None,
        handle: SupervisorRef | None = None,
        on_routing: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(runtime)
        self._makings = (library, store, link_factory, policy, observer, admission, news)
        """What a successor is started with, should this incarnation die."""
        self._on_routing = on_routing
        self._library = library
        self._news = _GuardedListener(news if news is not None else FleetListener())
        self._store = store
        self._link_factory = link_factory
        self._policy = policy or SupervisorPolicy()
        self._observer = observer or FleetObserver()
        self._admission = admission or StreamAdmission()
        self._records = RecordKeeper(store, self._policy.records)
        self._book = book if book is not None else SupervisorBook()
        self._devices = self._book.devices
        self._retiring = self._book.retiring
        self.handle = handle if handle is not None else SupervisorRef()
        """The reference everyone holds, device actors and timers too: it outlives this incarnation."""
        self.handle.point_at(self.actor_ref)

    def on_start(self) -> None:
        """A successor has its sessions already (the book): it can route as soon as it runs."""
        if self._book.deaths and self._on_routing is not None:
            self._on_routing(True)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Died outside the guard: a successor takes over the same sessions at once, and the
        messages not handled yet, unless it has died too often to try again."""
        book, now = self._book, time.monotonic()
        book.deaths = [at for at in book.deaths if now - at <= SUPERVISOR_RESTART_WINDOW]
        book.deaths.append(now)
        if self._on_routing is not None:
            self._on_routing(False)
        if len(book.deaths) > SUPERVISOR_MAX_RESTARTS:
            logger.error(
                "the supervisor died %d times in %.0f s (last: %r); not starting it again: no device"
                " is routed until the server is restarted",
                len(book.deaths),
                SUPERVISOR_RESTART_WINDOW,
                exception_value,
            )
            return
        successor = SupervisorActor.start(
            self.runtime, *self._makings, book=book, handle=self.handle, on_routing=self._on_routing
        )
        for envelope in self.actor_inbox.drain_after_finish():
            successor.actor_inbox.put(envelope)  # as sent: an ask keeps the future it is answered through
        logger.error(
            "the supervisor died (%r); started again with its %d devices and %d retiring",
            exception_value,
            len(book.devices),
            len(book.retiring),
        )

    def on_receive(self, message: Any) -> Any:
        """Every message in a guard: an exception escaping here would stop the supervisor, and
        with it the routing of every device."""
        self._handle_guarded(message)
        return None

    def _handle_guarded(self, message: Any) -> None:
        try:
            self._handle(message)
        except Exception as error:
            self._failed(message, error)

    def _failed(self, message: Any, error: Exception) -> None:
        """Log the failure and answer its sender, who would otherwise wait for its timeout."""
        device_id: str | None = getattr(message, "device_id", None)
        failure = f"{type(error).__name__}: {error}"
        log = logger if device_id is None else for_device(logger, device_id)
        log.error("%s failed: %s; routing goes on", type(message).__name__, failure, exc_info=error)
        try:
            match message:
                case OpenStream(reply=reply):
                    reply(
                        StreamRefused(
                            f"the server could not serve device_id {device_id} now ({failure});"
                            " reconnect in a moment",
                            Refusal.STORE_DOWN,
                        )
                    )
                case RouteButton(reply=reply):
                    reply(False)
                case RouteCommand(reply=reply):
                    reply(CommandResult(CommandOutcome.FAILED))
                case RemoveDevice(reply=reply):
                    reply(RemovalOutcome.FAILED)
                case SweepRecords(reply=reply):
                    reply(frozenset())
        except Exception:
            logger.exception("could not answer the failed %s", type(message).__name__)

    def _handle(self, message: Any) -> None:
        match message:
            case OpenStream():
                self._open_stream(message)
            case StreamClosed():
                self._close_stream(message)
            case RouteButton():
                self._route_button(message)
            case RouteCommand():
                self._route_command(message)
            case RemoveDevice():
                self._remove(message)
            case SweepRecords(now=now, reply=reply):
                self._sweep(now, reply)
            case PlaybackEnded(device_id=device_id):
                device = self._devices.get(device_id)
                if device is not None:
                    tell_if_alive(device.actor, message)
            case StateChanged(device_id=device_id, actor_urn=urn, state=state):
                device = self._devices.get(device_id)
                if device is not None and device.actor.actor_urn == urn:
                    device.state = state
            case Retired(device_id=device_id, actor_urn=urn, state=state):
                self._retired(device_id, urn, state)
            case _RetireOverdue(device_id=device_id, actor_urn=urn):
                retiring = self._retiring.get(device_id)
                if retiring is not None and retiring.actor_urn == urn:
                    for_device(logger, device_id).warning("retired without a final state from its actor")
                    if self._book.shutdown is not None:
                        self._book.shutdown.overdue.append(device_id)
                    self._retired(device_id, urn, retiring.state)
            case RetireAll(timeout=timeout, reply=reply):
                self._retire_all(timeout, reply)
            case _ShutdownOverdue():
                self._shutdown_overdue()
            case DeviceFailed(device_id=device_id, actor_urn=urn) if device_id in self._retiring:
                self._retired(device_id, urn, message.state.at_rest())
            case DeviceFailed():
                self._restart(message)
            case DescribeFleet(reply=reply):
                reply(
                    FleetStatus(
                        connected=len(self._devices),
                        restarts=self._book.restarts,
                        retiring=len(self._retiring),
                    )
                )
            case LeaseEnded():
                self._lease_ended(message.lease)
            case Drain():
                self._book.draining = True
                for device in self._devices.values():
                    tell_if_alive(device.actor, ShowLeaving())
            case _:
                logger.warning("supervisor: ignoring unknown message %r", message)

    def on_stop(self) -> None:
        for device_id in list(self._devices):
            self._retire(device_id)
        for retiring in self._retiring.values():
            for waiting in retiring.waiting:
                if isinstance(waiting, OpenStream):
                    waiting.reply(
                        StreamRefused("the server is shutting down; reconnect later", Refusal.DRAINING)
                    )
                elif isinstance(waiting, RemoveDevice):
                    waiting.reply(RemovalOutcome.CONNECTED)
                else:
                    waiting.reply(CommandResult(CommandOutcome.OFFLINE))
        self._retiring.clear()

    @property
    def connected(self) -> int:
        return len(self._devices)

    def _next(self) -> int:
        self._book.counter += 1
        return self._book.counter

    def _open_stream(self, message: OpenStream) -> None:
        device_id, peer = message.device_id, message.peer
        if self._book.draining:
            message.reply(StreamRefused("the server is shutting down; reconnect later", Refusal.DRAINING))
            return
        retiring = self._retiring.get(device_id)
        if retiring is not None:
            retiring.waiting.append(message)  # served once the old actor has handed over its state
            return
        device = self._devices.get(device_id)
        replaced = device is not None and message.kind in device.session.streams.values()
        if device is None:
            if len(self._devices) >= self._policy.max_devices:
                message.reply(
                    StreamRefused(
                        f"the server already serves its limit of {self._policy.max_devices} devices",
                        Refusal.FULL,
                    )
                )
                return
            refusal = self._records.refusal(device_id)
            if refusal is not None:
                message.reply(StreamRefused(refusal, Refusal.FULL))
                return
            device = self._start_device(device_id, peer)
        elif replaced:
            self._replace_stream(device_id, device, message)
        stream = self._next()
        device.session.streams[stream] = message.kind
        tell_if_alive(device.actor, StreamOpened(message.kind, replaced=replaced))
        message.reply(StreamGrant(device.session.link, device.session.number, stream))

    def _start_device(self, device_id: str, peer: str) -> _Device:
        lease = self._store.lease(device_id)
        saved = self._store.load(device_id)
        state = (saved or DeviceState()).fitted_to(self._library.modes).at_rest()
        desired = self._store.load_desired(device_id) if saved is not None else None
        if desired is not None:
            state = self._apply_desired(device_id, state, desired, lease)
        elif saved is None:
            self._store.save(device_id, state, lease=lease)  # seen from now on, whatever happens next
        session = _Session(self._next(), self._link_factory(device_id, peer))
        actor = self._start_actor(device_id, state, session.link, lease)
        device = _Device(actor, session, state, lease)
        self._devices[device_id] = device
        self._observer.device_connected()
        self._news.device_online(device_id, peer, state)
        for_device(logger, device_id).info("connected from %s in mode %d", peer, state.mode)
        return device

    def _apply_desired(self, device_id: str, state: DeviceState, desired: int, lease: Lease) -> DeviceState:
        """The mode an operator set while the device was away; forgotten once the state with it
        is saved, so a crash in between applies it again rather than losing it."""
        store, news = self._store, self._news

        def applied(saved: bool) -> None:
            """Run by the group commit among the other saves' answers: it must not raise into them."""
            if not saved:
                return
            try:
                store.clear_desired(device_id, desired)
            except Exception as error:
                for_device(logger, device_id).error(
                    "mode %d applied, but the store failed to forget it (%s); it is applied again"
                    " on the next connect",
                    desired,
                    error,
                )

        if desired < self._library.modes:
            state = replace(state, mode=desired)
            for_device(logger, device_id).info("mode %d, set while it was offline, applied", desired)
        self._store.save(device_id, state, applied, lease)
        news.desired_mode(device_id, None)
        return state

    def _replace_stream(self, device_id: str, device: _Device, message: OpenStream) -> None:
        """The older stream of this kind is ended by the link when the newer one attaches (the
        stream number orders them); it stays counted until its call is over, so the device is
        not retired in between."""
        if message.kind is StreamKind.STATUS:
            self._news.device_online(device_id, message.peer, device.state)
        for_device(logger, device_id).info(
            "a newer %s stream from %s replaces the older one", message.kind.value, message.peer
        )

    def _close_stream(self, message: StreamClosed) -> None:
        device = self._devices.get(message.device_id)
        if device is None or device.session.number != message.session:
            return
        if device.session.streams.pop(message.stream, None) is None:
            return
        if not device.session.streams:
            self._retire(message.device_id)
        elif message.kind not in device.session.streams.values():
            tell_if_alive(device.actor, message)

    def _start_actor(
        self, device_id: str, state: DeviceState, link: DeviceLink, lease: Lease
    ) -> pykka.ActorRef[Any]:
        return DeviceActor.start(
            self.runtime,
            device_id,
            state,
            link,
            self.handle,
            self._library,
            self._observer,
            self._store,
            self._admission,
            self._news,
            lease,
        )

    def _lease_ended(self, lease: Lease) -> None:
        """End the session of this lease (or an older one); a newer session stays, and the stale
        eviction is counted."""
        device_id = lease.device_id
        device = self._devices.get(device_id)
        retiring = self._retiring.get(device_id)
        if device is not None and lease.covers(device.lease):
            for_device(logger, device_id).info(
                "lease %s over (another server owns the device); ending its streams here", lease
            )
            self._retire(device_id, lease_ended=True)
        elif retiring is not None and lease.covers(retiring.lease):
            retiring.lease_ended = True  # its final state is stale: not saved
        elif device is not None or retiring is not None:
            self._store.stale.drop(STALE_EVICTION)
            for_device(logger, device_id).info("eviction of its older lease %s ignored", lease)

    def _retire(self, device_id: str, lease_ended: bool = False) -> None:
        """Tell the actor to retire; its ``Retired`` (or the timeout) completes it. A device taken
        over elsewhere is not saved: the new owner's state is newer, and were the device to come
        back here meanwhile, this replica's new claim would let a stale save through."""
        device = self._devices.pop(device_id)
        self._observer.device_disconnected()
        self._news.device_offline(device_id, device.state.at_rest())
        if lease_ended:
            retire = Retire(CloseCause.LEASE_ENDED, f"device_id {device_id} is now served by another server")
        elif self._book.draining:
            retire = Retire(CloseCause.SHUTDOWN, "the server is shutting down; reconnect later")
        else:
            retire = Retire(CloseCause.RETIRED, "the device's connection is gone")
        urn = device.actor.actor_urn
        try:
            device.actor.tell(retire)
        except pykka.ActorDeadError:
            for_device(logger, device_id).warning("retiring without a final state (its actor is gone)")
            device.session.link.close(retire.cause, retire.reason)
            if not lease_ended:
                self._store.save(device_id, device.state.at_rest(), lease=device.lease)
            return
        self._retiring[device_id] = _Retiring(
            urn, device.state.at_rest(), device.lease, lease_ended=lease_ended
        )
        self.runtime.call_later(
            self._policy.retire_timeout, tell_if_alive, self.handle, _RetireOverdue(device_id, urn)
        )

    def _retired(self, device_id: str, actor_urn: str, state: DeviceState) -> None:
        """Only the retire still awaited saves: a late answer must not overwrite a newer actor's state."""
        retiring = self._retiring.get(device_id)
        if retiring is None or retiring.actor_urn != actor_urn:
            return
        del self._retiring[device_id]
        if not retiring.lease_ended:
            self._store.save(device_id, state, lease=retiring.lease)
        for waiting in retiring.waiting:
            self._handle_guarded(waiting)  # one failing must not leave the others unanswered
        self._shutdown_done_if_retired()

    def _retire_all(self, timeout: float, reply: Callable[[tuple[str, ...]], None]) -> None:
        """Shutdown's handshake: every device retired and its final state (``Retired``) saved, then
        the answer; the deadline answers for actors that never hand theirs over."""
        self._book.draining = True
        self._book.shutdown = _Shutdown(reply)
        for device_id in list(self._devices):
            self._retire(device_id)
        self.runtime.call_later(timeout, tell_if_alive, self.handle, _ShutdownOverdue())
        self._shutdown_done_if_retired()

    def _shutdown_overdue(self) -> None:
        shutdown = self._book.shutdown
        if shutdown is None:
            return
        for device_id, retiring in list(self._retiring.items()):
            for_device(logger, device_id).warning(
                "its actor did not hand over its final state before the shutdown deadline; saving the"
                " last state known (mode %d): a change not yet reported may be lost",
                retiring.state.mode,
            )
            shutdown.overdue.append(device_id)
            self._retired(device_id, retiring.actor_urn, retiring.state)

    def _shutdown_done_if_retired(self) -> None:
        """Answer ``RetireAll`` once nothing is left to retire (streams opened meanwhile are refused)."""
        shutdown = self._book.shutdown
        if shutdown is None or self._retiring or self._devices:
            return
        self._book.shutdown = None
        shutdown.reply(tuple(shutdown.overdue))

    def _route_button(self, message: RouteButton) -> None:
        device = self._devices.get(message.device_id)
        if device is None or device.session.number != message.session:
            message.reply(False)
            return
        try:
            device.actor.tell(ButtonPressed(message.input, message.reply, message.received_at))
        except pykka.ActorDeadError:
            message.reply(False)

    def _route_command(self, message: RouteCommand) -> None:
        """To the device's actor if it is connected; otherwise only a mode can wait for it."""
        device_id = message.device_id
        device = self._devices.get(device_id)
        if device is not None:
            try:
                device.actor.tell(DeviceCommand(message.command, message.reply))
                return
            except pykka.ActorDeadError:
                pass
        retiring = self._retiring.get(device_id)
        if retiring is not None:
            retiring.waiting.append(message)  # decided once the old actor has handed over its state
            return
        command = message.command
        if self._store.load(device_id) is None:
            message.reply(CommandResult(CommandOutcome.UNKNOWN))
        elif not isinstance(command, SetMode):
            message.reply(CommandResult(CommandOutcome.OFFLINE))
        elif not 0 <= command.mode < self._library.modes:
            message.reply(CommandResult(CommandOutcome.INVALID))
        else:
            self._store.set_desired(device_id, command.mode)
            self._news.desired_mode(device_id, command.mode)
            for_device(logger, device_id).info("mode %d kept for its reconnect", command.mode)
            message.reply(CommandResult(CommandOutcome.DESIRED))

    def _remove(self, message: RemoveDevice) -> None:
        """Decided here, where connects are: a device connected (or still handing over its final
        state) keeps its record."""
        device_id = message.device_id
        retiring = self._retiring.get(device_id)
        if retiring is not None:
            retiring.waiting.append(message)  # decided once its final state is in
            return
        if device_id in self._devices:
            message.reply(RemovalOutcome.CONNECTED)
            return
        news = self._news

        def removed(gone: bool) -> None:
            if gone:
                news.devices_removed(frozenset((device_id,)))
                for_device(logger, device_id).info("record removed by an operator")
            message.reply(RemovalOutcome.REMOVED if gone else RemovalOutcome.KEPT)

        self._records.remove(device_id, removed)

    def _sweep(self, now: float, reply: Callable[[frozenset[str]], None]) -> None:
        news = self._news

        def swept(gone: frozenset[str]) -> None:
            if gone:
                news.devices_removed(gone)
                logger.info("removed the records of %d devices not seen within the retention", len(gone))
            reply(gone)

        self._records.sweep(now, self._devices.keys() | self._retiring.keys(), swept)

    def _restart(self, message: DeviceFailed) -> None:
        device = self._devices.get(message.device_id)
        if device is None or device.actor.actor_urn != message.actor_urn:
            return
        now = time.monotonic()
        device.failures = [at for at in device.failures if now - at <= self._policy.restart_window]
        device.failures.append(now)
        if len(device.failures) > self._policy.max_restarts:
            for_device(logger, message.device_id).error(
                "actor failed %d times in %.0f s; ending its connection",
                len(device.failures),
                self._policy.restart_window,
            )
            del self._devices[message.device_id]
            self._observer.device_disconnected()
            self._news.device_offline(message.device_id, message.state.at_rest())
            self._store.save(message.device_id, message.state.at_rest(), lease=device.lease)
            device.session.link.close(CloseCause.FAILED, "the server failed to handle this device repeatedly")
            return
        state = DeviceState(
            mode=message.state.mode,
            playing=message.state.playing,
            next_playback_id=message.state.next_playback_id,
            fault=Fault.RECOVERED,
        )
        self._book.restarts += 1
        self._observer.actor_restarted()
        device.actor = self._start_actor(message.device_id, state, device.session.link, device.lease)
        device.state = state
        for_device(logger, message.device_id).warning(
            "actor restarted from its last state after %s", message.error
        )
