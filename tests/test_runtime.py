"""Pooled Pykka actors: everything an actor promises, on a few shared worker threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, ClassVar

import pykka
import pytest

from actors.runtime import ActorPool, PooledActor, default_pool

ONE_WORKER = ActorPool(1, name="test-one-worker")
TWO_WORKERS = ActorPool(2, name="test-two-workers")


class Outside:
    """What a Recorder lets the test see from outside: its failures, its stop, a gate it waits at."""

    def __init__(self) -> None:
        self.failures: list[BaseException | None] = []
        self.stopped = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()


class Recorder(PooledActor):
    actor_pool = TWO_WORKERS

    def __init__(self, outside: Outside | None = None) -> None:
        super().__init__()
        self.outside = outside or Outside()
        self.seen: list[Any] = []
        self.started_on: str | None = None

    def on_start(self) -> None:
        self.started_on = threading.current_thread().name

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("boom")
        if message == "hold":
            self.outside.holding.set()
            self.outside.release.wait(2)
        if message == "seen":
            return list(self.seen)
        if message == "started_on":
            return self.started_on
        self.seen.append(message)
        return message

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.outside.failures.append(exception_value)

    def on_stop(self) -> None:
        self.outside.stopped.set()


class SlowOnOneWorker(PooledActor):
    actor_pool = ONE_WORKER
    log: ClassVar[list[str]] = []

    def on_receive(self, message: Any) -> Any:
        if message == "ping":
            return "pong"
        time.sleep(0.001)
        return None


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def test_messages_are_handled_one_at_a_time_in_the_order_sent() -> None:
    actor = Recorder.start()
    for n in range(500):
        actor.tell(n)
    assert actor.ask("seen") == list(range(500))


def test_on_start_runs_on_a_pool_worker_before_any_message() -> None:
    actor = Recorder.start()
    assert str(actor.ask("started_on")).startswith("test-two-workers")


def test_ask_returns_the_answer_and_an_exception_to_the_caller() -> None:
    actor = Recorder.start()
    assert actor.ask("hello") == "hello"
    with pytest.raises(RuntimeError, match="boom"):
        actor.ask("boom")
    assert actor.is_alive()


def test_an_exception_from_a_told_message_calls_on_failure_and_stops_the_actor() -> None:
    outside = Outside()
    actor = Recorder.start(outside)
    actor.tell("boom")
    deadline = time.monotonic() + 2
    while actor.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not actor.is_alive()
    assert [str(error) for error in outside.failures] == ["boom"]


def test_a_stopped_actor_runs_on_stop_and_refuses_later_messages() -> None:
    outside = Outside()
    actor = Recorder.start(outside)
    actor.stop()
    assert outside.stopped.is_set()
    with pytest.raises(pykka.ActorDeadError):
        actor.tell("too late")


def test_asks_waiting_behind_a_stop_are_answered_as_dead() -> None:
    outside = Outside()
    actor = Recorder.start(outside)
    actor.tell("hold")
    assert outside.holding.wait(2)
    stop = actor.stop(block=False)
    waiting = actor.ask("after the stop", block=False)
    outside.release.set()
    stop.get(timeout=2)
    with pytest.raises(pykka.ActorDeadError):
        waiting.get(timeout=2)


def test_thousands_of_actors_share_the_pools_threads() -> None:
    before = threading.active_count()
    actors = [Recorder.start() for _ in range(2000)]
    assert [actor.ask(n) for n, actor in enumerate(actors)] == list(range(2000))
    assert threading.active_count() <= before  # other tests' threads may still be ending


def test_a_busy_actor_yields_its_worker_to_others() -> None:
    busy = SlowOnOneWorker.start()
    for _ in range(1000):  # about a second of work queued on the only worker
        busy.tell("work")
    other = SlowOnOneWorker.start()
    started = time.monotonic()
    assert other.ask("ping", timeout=5) == "pong"
    assert time.monotonic() - started < 0.5


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        ActorPool(0)


def test_someone_waiting_for_an_actor_to_stop_is_woken_by_the_stop() -> None:
    actor = Recorder.start()
    stopped = threading.Event()

    def watch() -> None:
        if actor.actor_stopped.wait(5):
            stopped.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    actor.stop()
    watcher.join(5)
    assert stopped.is_set()
    assert actor.actor_stopped.wait(0)


def test_the_shared_pool_cannot_change_size_once_it_runs() -> None:
    workers = default_pool().workers
    assert default_pool(workers) is default_pool()
    with pytest.raises(RuntimeError, match="cannot become"):
        default_pool(workers + 1)
