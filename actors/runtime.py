"""Pykka actors that share a few worker threads instead of owning one each.

A ``ThreadingActor`` is a thread: about 24 KB of memory and a thread start per actor, which
for one actor per connected device dominated the server's cost per idle device and per
connect. A ``PooledActor`` keeps everything Pykka promises — its own inbox, one message at a
time in order, ``tell``/``ask``/proxies, ``on_start``/``on_stop``/``on_failure``, the
registry — but runs its messages on a shared ``ActorPool`` whenever it has any.

The rule that comes with it: a pooled actor must not block waiting for another pooled actor
(``ask(...).get()``), or a pool whose workers all wait could wait on itself. Device actors
only ``tell``; the supervisor, which asks device actors, stays a ``ThreadingActor``.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from typing import Any, ClassVar

import pykka
from pykka import messages
from pykka._envelope import Envelope

logger = logging.getLogger(__name__)

MESSAGES_PER_TURN = 32
"""How many messages an actor handles before yielding its worker to the next ready actor."""


class ActorPool:
    """Worker threads that run ready actors; an actor is on at most one worker at a time."""

    def __init__(self, workers: int, name: str = "actor-pool") -> None:
        if workers < 1:
            raise ValueError(f"an actor pool needs at least one worker, not {workers}")
        self._ready: queue.SimpleQueue[PooledActor] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True) for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def schedule(self, actor: PooledActor) -> None:
        self._ready.put(actor)

    def _work(self) -> None:
        while True:
            actor = self._ready.get()
            try:
                actor._run_turn()
            except Exception:  # an actor's own failures are handled in the turn; this is a bug guard
                logger.exception("actor pool worker survived an error running %s", actor)


_default_pool: ActorPool | None = None
_default_pool_lock = threading.Lock()
DEFAULT_WORKERS = 4


def default_pool(workers: int | None = None) -> ActorPool:
    """The process's shared pool, started on first use with ``workers`` threads (default 4).

    Asking again for a different size once it runs is an error: actors already run on it.
    """
    global _default_pool
    with _default_pool_lock:
        if _default_pool is None:
            _default_pool = ActorPool(workers or DEFAULT_WORKERS)
        elif workers is not None and workers != _default_pool.workers:
            raise RuntimeError(
                f"the actor pool already runs {_default_pool.workers} workers; it cannot become {workers}"
            )
        return _default_pool


class _Inbox:
    """A pooled actor's inbox: putting into an idle actor's inbox puts the actor on the pool.

    Two lists rather than a deque: a deque's first block is ~0.7 KB, per actor, per device.
    """

    __slots__ = ("_actor", "_incoming", "_lock", "_outgoing", "_scheduled")

    def __init__(self) -> None:
        self._incoming: list[Envelope[Any]] = []
        self._outgoing: list[Envelope[Any]] = []  # reversed: the next message is last
        self._lock = threading.Lock()
        self._scheduled = True  # until the actor starts: messages wait for on_start
        self._actor: PooledActor | None = None

    def put(self, envelope: Envelope[Any], /) -> None:
        with self._lock:
            self._incoming.append(envelope)
            if self._scheduled:
                return
            self._scheduled = True
        assert self._actor is not None
        self._actor.pool.schedule(self._actor)

    def get(self) -> Envelope[Any]:
        with self._lock:
            envelope = self._pop()
        if envelope is None:
            raise IndexError("the inbox is empty")
        return envelope

    def empty(self) -> bool:
        with self._lock:
            return not self._incoming and not self._outgoing

    def next_or_idle(self) -> Envelope[Any] | None:
        """The next message, or None after marking the actor idle (the next put schedules it)."""
        with self._lock:
            envelope = self._pop()
            if envelope is None:
                self._scheduled = False
            return envelope

    def _pop(self) -> Envelope[Any] | None:
        if not self._outgoing:
            if not self._incoming:
                return None
            self._incoming.reverse()
            self._outgoing, self._incoming = self._incoming, self._outgoing
        return self._outgoing.pop()

    def bind(self, actor: PooledActor) -> None:
        self._actor = actor


_STOP_FLAG_LOCK = threading.Lock()


class _StopFlag(threading.Event):
    """Pykka's ``actor_stopped`` without a Condition (a lock and a deque block, ~1 KB) per actor.

    Pykka only sets and tests it; a ``wait`` gets a real Event, made the first time one is asked for.
    """

    def __init__(self) -> None:  # deliberately not Event.__init__: that builds the Condition
        self._stopped = False
        self._waitable: threading.Event | None = None

    def is_set(self) -> bool:
        return self._stopped

    def set(self) -> None:
        with _STOP_FLAG_LOCK:
            self._stopped = True
            waitable = self._waitable
        if waitable is not None:
            waitable.set()

    def clear(self) -> None:
        raise RuntimeError("a stopped actor stays stopped")

    def wait(self, timeout: float | None = None) -> bool:
        with _STOP_FLAG_LOCK:
            if self._stopped:
                return True
            if self._waitable is None:
                self._waitable = threading.Event()
            waitable = self._waitable
        return waitable.wait(timeout)


class PooledActor(pykka.Actor):
    """A Pykka actor whose messages run on an ``ActorPool`` rather than on a thread of its own."""

    actor_pool: ClassVar[ActorPool | None] = None
    """The pool this class's actors run on; None: the process's ``default_pool()``."""

    actor_inbox: _Inbox

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor_stopped = _StopFlag()
        self.actor_ref.actor_stopped = self.actor_stopped

    @staticmethod
    def _create_actor_inbox() -> _Inbox:
        return _Inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    def _start_actor_loop(self) -> None:
        self.pool = type(self).actor_pool or default_pool()
        self._started = False
        self.actor_inbox.bind(self)
        self.pool.schedule(self)

    def _run_turn(self) -> None:
        """Called by a pool worker: on_start the first time, then up to MESSAGES_PER_TURN messages."""
        if not self._started:
            self._started = True
            self._actor_loop_setup()
        for _ in range(MESSAGES_PER_TURN):
            if self.actor_stopped.is_set():
                # Pykka's teardown, and it goes on answering whatever still arrives.
                while (late := self.actor_inbox.next_or_idle()) is not None:
                    _answer_dead(self, late)
                return
            envelope = self.actor_inbox.next_or_idle()
            if envelope is None:
                return
            self._handle_envelope(envelope)
        self.pool.schedule(self)  # still busy: let other ready actors have a turn

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        """The body of Pykka's ``_actor_loop_running`` for one message, unchanged in meaning."""
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                logger.info("Exception returned from %s to caller:", self, exc_info=sys.exc_info())
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            logger.debug("%r in %s. Stopping all actors.", sys.exc_info()[1], self)
            self._stop()
            pykka.ActorRegistry.stop_all()


def _answer_dead(actor: pykka.Actor, envelope: Envelope[Any]) -> None:
    if envelope.reply_to is None:
        return
    if isinstance(envelope.message, messages._ActorStop):
        envelope.reply_to.set(None)
        return
    error = pykka.ActorDeadError(f"{actor.actor_ref} stopped before handling the message")
    envelope.reply_to.set_exception(exc_info=(pykka.ActorDeadError, error, None))
