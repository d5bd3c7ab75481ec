"""A Pykka runtime whose actors take their turns on one event loop's thread.

Pykka runs an actor by calling its own ``_actor_loop`` "on the thread or greenlet" that the
runtime provides (its documented hooks for new actor types: ``_create_actor_inbox``,
``_create_future``, ``_start_actor_loop``); Pykka's gevent and eventlet runtimes gave each
actor a greenlet. This one runs Pykka's loop in turns on the thread of an asyncio loop: an
actor's turn is Pykka's own ``_actor_loop_running``, unchanged; when the inbox is empty (or
the turn has handled its share), ``get`` ends the turn by raising out of it, before Pykka
touches the next envelope, and the next ``put`` schedules a new turn with ``call_soon``.
Pykka's ``_actor_loop_setup`` runs before the first turn and ``_actor_loop_teardown`` after
the last. So every actor keeps its own inbox and handles one message at a time, in order,
while a press travels loop → supervisor → device actor → loop without a thread hand-off, a
lock convoy or a GIL switch interval on the way: on a busy core, each of those cost several
milliseconds. An idle actor holds no stack at all (a suspended greenlet kept ~6 KB of C and
Python stack per device).

``ActorRuntime`` is owned by whoever builds it: the server binds one to its own event loop;
code without a loop (actor tests, tools) starts one on a thread of its own. Its rule: nothing
on the runtime's thread may block waiting for an actor of the runtime. The futures of
``PooledActor`` enforce it: a ``get()`` there that would have to wait raises at once instead
of freezing every actor (and the loop) forever. Actors on it ``tell``; replies go up by
``tell`` or by a reply callable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import pykka

logger = logging.getLogger(__name__)

MESSAGES_PER_TURN = 32
"""How many messages an actor handles before it lets the loop and the other actors run."""

_local = threading.local()


def _on_runtime_thread() -> ActorRuntime | None:
    runtime: ActorRuntime | None = getattr(_local, "runtime", None)
    return runtime


class WouldDeadlock(RuntimeError):
    """A ``get()`` on the runtime's thread would have waited for an actor that runs on that thread."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class ActorRuntime:
    """The thread pooled actors run on: an asyncio event loop's.

    Built on the loop's own thread (``ActorRuntime(loop)``), or with a loop and thread of its
    own (``ActorRuntime.on_own_thread()``). ``shutdown`` stops its actors without waiting on
    its own thread, then (for its own thread) stops the loop and joins the thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, name: str = "actor-runtime") -> None:
        self.name = name
        self._loop = loop
        self._thread_id: int | None = None
        self._own_thread: threading.Thread | None = None
        self._actors: set[PooledActor] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._bind_here()

    def _bind_here(self) -> None:
        self._thread_id = threading.get_ident()
        _local.runtime = self

    @classmethod
    def on_own_thread(cls, name: str = "actor-runtime") -> ActorRuntime:
        """A runtime on a new thread running a new event loop, for code that has no loop of its own."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        runtime: list[ActorRuntime] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            runtime.append(cls(loop, name=name))
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        thread = threading.Thread(target=run, name=name)
        thread.start()
        ready.wait()
        runtime[0]._own_thread = thread
        return runtime[0]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def actors(self) -> int:
        with self._lock:
            return len(self._actors)

    def on_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback`` on the runtime's thread, from any thread (no wake-up write from its own)."""
        if self.on_thread():
            self._loop.call_soon(callback, *args)
        else:
            try:
                self._loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:  # the loop is closed: the runtime has shut down
                logger.debug("%s: dropped a call after shutdown", self.name)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        """Run ``callback`` on the runtime's thread after ``delay`` seconds; cancellable from there."""
        if self.on_thread():
            return self._loop.call_later(delay, callback, *args)
        timer: list[asyncio.TimerHandle] = []

        def arm() -> None:
            timer.append(self._loop.call_later(delay, callback, *args))

        self.call_soon(arm)
        return _RemoteTimer(self, timer)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop this runtime's actors (their on_stop runs), then its own thread if it has one.

        Called from another thread it waits up to ``timeout`` for the actors to stop; on the
        runtime's own thread it only asks them to, since waiting there would wait on itself.
        A loop that outlives the runtime stops being its thread: gets there may block again.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            actors = list(self._actors)
        stops = []
        for actor in actors:
            with contextlib.suppress(pykka.ActorDeadError):
                stops.append(actor.actor_ref.stop(block=False))
        if not self.on_thread():
            try:
                pykka.get_all(stops, timeout=timeout)
            except pykka.Timeout:
                logger.warning("%s: %d actors did not stop within %.1f s", self.name, self.actors, timeout)
        if self._own_thread is not None:
            self.call_soon(self._loop.stop)
            if not self.on_thread():
                self._own_thread.join(timeout)
        else:
            self.call_soon(self._unbind)

    def _unbind(self) -> None:
        if getattr(_local, "runtime", None) is self:
            _local.runtime = None

    def _adopt(self, actor: PooledActor) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is shut down; it starts no more actors")
            self._actors.add(actor)

    def _release(self, actor: PooledActor) -> None:
        with self._lock:
            self._actors.discard(actor)


class _RemoteTimer:
    """A timer armed from another thread: cancelling it is posted to the runtime's thread too,
    behind the arming (the loop runs its ready callbacks in order)."""

    def __init__(self, runtime: ActorRuntime, timer: list[asyncio.TimerHandle]) -> None:
        self._runtime = runtime
        self._timer = timer

    def cancel(self) -> None:
        def cancel_now() -> None:
            for handle in self._timer:
                handle.cancel()

        self._runtime.call_soon(cancel_now)


class PooledFuture(pykka.ThreadingFuture[Any]):
    """A ThreadingFuture that refuses to wait on the runtime's thread, where waiting deadlocks."""

    def get(self, *, timeout: float | None = None) -> Any:
        if _on_runtime_thread() is None:
            return super().get(timeout=timeout)
        try:
            return super().get(timeout=0)
        except pykka.Timeout:
            raise WouldDeadlock(
                "an actor's reply was awaited on the actor runtime's own thread: the actor can only "
                "answer once that thread is free; tell, and let the answer come back as a message"
            ) from None


_waitable_guard = threading.Lock()


class _StoppedFlag(threading.Event):
    """Pykka's ``actor_stopped`` without a Condition until somebody waits on it.

    A ``threading.Event`` holds a Condition and its deque of waiters (~0.7 KB); one per actor
    is 0.7 KB per connected device, for a wait that hardly anyone makes.
    """

    def __init__(self) -> None:  # no Event.__init__: the waitable Event is made on first wait
        self._stopped = False
        self._waitable: threading.Event | None = None

    def is_set(self) -> bool:
        return self._stopped

    def set(self) -> None:
        with _waitable_guard:
            self._stopped = True
            waitable = self._waitable
        if waitable is not None:
            waitable.set()

    def clear(self) -> None:
        with _waitable_guard:
            self._stopped = False
            if self._waitable is not None:
                self._waitable.clear()

    def __repr__(self) -> str:
        return f"<actor stopped: {self._stopped}>"

    def _at_fork_reinit(self) -> None:
        self._waitable = None

    def wait(self, timeout: float | None = None) -> bool:
        with _waitable_guard:
            if self._stopped:
                return True
            if self._waitable is None:
                self._waitable = threading.Event()
            waitable = self._waitable
        return waitable.wait(timeout)


class _TurnOver(Exception):
    """Raised by ``_Inbox.get`` to end an actor's turn; Pykka's loop reads its inbox outside the
    ``try`` that guards a handler, so this leaves the loop without touching any envelope."""


class _Inbox:
    """A pooled actor's inbox: a put wakes an idle actor by scheduling its next turn.

    Two lists rather than a deque: a deque's first block is ~0.7 KB, per actor, per device.
    """

    __slots__ = ("_actor", "_handled", "_incoming", "_lock", "_outgoing", "_scheduled", "_turns")

    def __init__(self) -> None:
        self._incoming: list[Any] = []
        self._outgoing: list[Any] = []  # reversed: the next message is last
        self._lock = threading.Lock()
        self._scheduled = True  # until the actor's first turn, it is as good as scheduled
        self._handled = 0
        self._turns = True
        """False once the actor has stopped: its teardown takes what is left in one go."""
        self._actor: PooledActor | None = None

    def put(self, envelope: Any, /) -> None:
        with self._lock:
            actor = self._actor
            if actor is not None and actor._finished:
                late = True
            else:
                late = False
                self._incoming.append(envelope)
                if self._scheduled:
                    return
                self._scheduled = True
        if late:
            _answer_dead(envelope)
            return
        assert actor is not None
        actor.runtime.call_soon(actor._resume)

    def get(self) -> Any:
        """Called only by the actor's own loop, in its turn: the next envelope, or _TurnOver."""
        with self._lock:
            if self._turns and self._handled >= MESSAGES_PER_TURN:
                envelope = None  # a turn is over: stay scheduled, let the others run
            else:
                envelope = self._pop()
                if envelope is None:
                    self._scheduled = False
            if envelope is not None:
                self._handled += 1
                return envelope
        assert self._actor is not None
        if self._handled >= MESSAGES_PER_TURN:
            self._actor.runtime.call_soon(self._actor._resume)
        raise _TurnOver

    def end_turns(self) -> None:
        """The actor has stopped: its teardown takes every envelope left, however many."""
        self._turns = False

    def empty(self) -> bool:
        with self._lock:
            return not self._incoming and not self._outgoing

    def new_turn(self) -> None:
        self._handled = 0

    def drain_after_finish(self) -> list[Any]:
        with self._lock:
            self._outgoing.reverse()
            left = self._outgoing + self._incoming
            self._outgoing, self._incoming = [], []
            return left

    def _pop(self) -> Any | None:
        if not self._outgoing:
            if not self._incoming:
                return None
            self._incoming.reverse()
            self._outgoing, self._incoming = self._incoming, self._outgoing
        return self._outgoing.pop()

    def bind(self, actor: PooledActor) -> None:
        self._actor = actor


class PooledActor(pykka.Actor):
    """A Pykka actor run by an ``ActorRuntime``: its own inbox and Pykka's own actor loop, in turns.

    The runtime is the first constructor argument, so who owns it is explicit:
    ``MyActor.start(runtime, ...)``.
    """

    actor_inbox: _Inbox

    def __init__(self, runtime: ActorRuntime, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor_stopped = self.actor_ref.actor_stopped = _StoppedFlag()
        self.runtime = runtime
        self._started = False
        self._finished = False

    @staticmethod
    def _create_actor_inbox() -> _Inbox:
        return _Inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return PooledFuture()

    def _start_actor_loop(self) -> None:
        try:
            self.runtime._adopt(self)
        except RuntimeError:
            pykka.ActorRegistry.unregister(self.actor_ref)  # Pykka registered it a moment ago
            self.actor_stopped.set()
            raise
        self.actor_inbox.bind(self)
        self.runtime.call_soon(self._resume)

    def _resume(self) -> None:
        """On the runtime's thread, from the loop: one turn, until the inbox is empty or the turn's
        share is handled; after the last, Pykka's teardown."""
        if self._finished:
            return
        self.actor_inbox.new_turn()
        try:
            if not self._started:
                self._started = True
                self._actor_loop_setup()  # Pykka's: on_start, a failure stops the actor
            self._actor_loop_running()  # Pykka's own loop, until get() ends the turn
        except _TurnOver:
            return
        except WouldDeadlock:
            # Pykka answers a BaseException in a handler by stopping every actor and waiting for
            # each in turn (stop_all); the first wait is refused here, so the rest are asked
            # to stop without waiting.
            pykka.ActorRegistry.stop_all(block=False)
            logger.error("%s stopped every actor after a fatal error; not waiting for them here", self)
        except BaseException:
            logger.exception("%s: its actor loop ended with an error", self)
        self._finish()

    def _finish(self) -> None:
        """The actor has stopped: Pykka's teardown answers what is left, then the runtime lets go."""
        self.actor_inbox.end_turns()
        try:
            self._actor_loop_teardown()
        except BaseException:
            logger.exception("%s: its teardown failed", self)
        with self.actor_inbox._lock:
            self._finished = True
        if not self.actor_stopped.is_set():
            pykka.ActorRegistry.unregister(self.actor_ref)
            self.actor_stopped.set()
        for envelope in self.actor_inbox.drain_after_finish():
            _answer_dead(envelope)
        self.runtime._release(self)


def tell_if_alive(actor: pykka.ActorRef[Any], message: object) -> None:
    """Tell, unless the actor has stopped meanwhile (a fan-out or a reply to an actor that may be
    gone): a stopped recipient must not stop its sender."""
    try:
        actor.tell(message)
    except pykka.ActorDeadError:
        logger.debug("dropped %r for a stopped actor", message)


def _answer_dead(envelope: Any) -> None:
    reply_to: pykka.Future[Any] | None = getattr(envelope, "reply_to", None)
    if reply_to is None:
        return
    error = pykka.ActorDeadError("the actor stopped before handling the message")
    reply_to.set_exception(exc_info=(pykka.ActorDeadError, error, None))
