"""The actor runtime: one suite of Pykka's actor semantics, passed by ThreadingActor and PooledActor alike.

Pykka runs its own suite once per runtime; this does the same for the runtime the server's
actors use (turns on one event loop's thread), so "a pooled actor is a Pykka actor" is a
tested fact. The cases after the suite are what only the pooled runtime promises.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import pykka
import pytest

from actors.runtime import MESSAGES_PER_TURN, ActorRuntime, PooledActor, WouldDeadlock


class Outside:
    """What the test sees of an actor from outside: what it handled, its failures, its stop."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.failures: list[BaseException | None] = []
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.threads: set[str] = set()
        self.inside = 0
        self.overlapped = False


class Behaviour:
    """The actor under test, whatever runtime runs it."""

    def __init__(self, outside: Outside, fail_on_start: bool = False) -> None:
        super().__init__()
        self.outside = outside
        self.fail_on_start = fail_on_start
        self.value = 0

    def on_start(self) -> None:
        if self.fail_on_start:
            raise RuntimeError("on_start failed")
        self.outside.started.set()

    def on_receive(self, message: Any) -> Any:
        outside = self.outside
        outside.inside += 1
        outside.overlapped |= outside.inside > 1
        outside.threads.add(threading.current_thread().name)
        try:
            if message == "boom":
                raise RuntimeError("boom")
            if message == "exit":
                raise SystemExit("exit")
            outside.seen.append(message)
            return message
        finally:
            outside.inside -= 1

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.outside.failures.append(exception_value)

    def on_stop(self) -> None:
        self.outside.stopped.set()

    def add(self, amount: int) -> int:
        self.value += amount
        return self.value


@dataclass
class Runtime:
    """Starts a Behaviour actor on one kind of runtime."""

    name: str
    start: Callable[..., pykka.ActorRef[Any]]


class ThreadedBehaviour(Behaviour, pykka.ThreadingActor):
    pass


class PooledBehaviour(Behaviour, PooledActor):
    runtime_for_tests: ClassVar[ActorRuntime]

    def __init__(self, outside: Outside, fail_on_start: bool = False) -> None:
        PooledActor.__init__(self, self.runtime_for_tests)
        self.outside = outside
        self.fail_on_start = fail_on_start
        self.value = 0


@pytest.fixture
def own_runtime() -> Iterator[ActorRuntime]:
    runtime = ActorRuntime.on_own_thread("test-runtime")
    yield runtime
    runtime.shutdown()


@pytest.fixture(params=["threading", "pooled"])
def runtime(request: pytest.FixtureRequest, own_runtime: ActorRuntime) -> Runtime:
    if request.param == "threading":
        return Runtime("threading", ThreadedBehaviour.start)
    PooledBehaviour.runtime_for_tests = own_runtime
    return Runtime("pooled", PooledBehaviour.start)


# The suite: what every Pykka actor does.


def test_on_start_runs_before_the_first_message(runtime: Runtime) -> None:
    outside = Outside()
    actor = runtime.start(outside)
    assert actor.ask("first") == "first"
    assert outside.started.is_set()


def test_messages_are_handled_one_at_a_time_in_the_order_sent(runtime: Runtime) -> None:
    outside = Outside()
    actor = runtime.start(outside)
    for n in range(500):
        actor.tell(n)
    assert actor.ask("last") == "last"
    assert outside.seen == [*range(500), "last"]


def test_messages_told_from_many_threads_never_run_at_once(runtime: Runtime) -> None:
    outside = Outside()
    actor = runtime.start(outside)

    def send() -> None:
        for n in range(200):
            actor.tell(n)

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    actor.ask("barrier")
    assert len(outside.seen) == 801
    assert not outside.overlapped


def test_ask_returns_the_answer_and_an_exception_to_the_caller_and_the_actor_goes_on(
    runtime: Runtime,
) -> None:
    outside = Outside()
    actor = runtime.start(outside)
    assert actor.ask("hello") == "hello"
    with pytest.raises(RuntimeError, match="boom"):
        actor.ask("boom")
    assert actor.is_alive()
    assert outside.failures == []


def test_an_exception_in_a_told_message_calls_on_failure_and_stops_the_actor(runtime: Runtime) -> None:
    outside = Outside()
    actor = runtime.start(outside)
    actor.tell("boom")
    assert actor.actor_stopped.wait(5)
    assert not actor.is_alive()
    assert [str(error) for error in outside.failures] == ["boom"]
    assert pykka.ActorRegistry.get_by_urn(actor.actor_urn) is None
    assert not outside.stopped.is_set(), "on_stop is not called when the actor fails"


def test_an_exception_in_on_start_stops_the_actor(runtime: Runtime) -> None:
    outside = Outside()
    actor = runtime.start(outside, fail_on_start=True)
    assert actor.actor_stopped.wait(5)
    assert not actor.is_alive()


def test_stop_runs_on_stop_and_later_messages_are_refused_as_dead(runtime: Runtime) -> None:
    outside = Outside()
    actor = runtime.start(outside)
    assert actor.stop() is True
    assert outside.stopped.is_set()
    with pytest.raises(pykka.ActorDeadError):
        actor.tell("late")
    with pytest.raises(pykka.ActorDeadError):
        actor.ask("late")
    assert actor.stop() is False


def test_asks_waiting_behind_a_stop_are_answered_as_dead(runtime: Runtime) -> None:
    outside = Outside()
    actor = runtime.start(outside)
    stopping = actor.stop(block=False)
    queued = [actor.ask(n, block=False) for n in range(3)]
    assert stopping.get(timeout=5) is True
    for future in queued:
        with pytest.raises(pykka.ActorDeadError):
            future.get(timeout=5)


def test_the_registry_finds_actors_and_stop_all_stops_them(runtime: Runtime) -> None:
    actors = [runtime.start(Outside()) for _ in range(3)]
    for actor in actors:
        assert pykka.ActorRegistry.get_by_urn(actor.actor_urn) is actor
    found = {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}
    assert {actor.actor_urn for actor in actors} <= found
    assert all(pykka.ActorRegistry.stop_all(block=True, timeout=5))
    assert not any(actor.is_alive() for actor in actors)


def test_a_base_exception_in_a_handler_stops_every_actor(runtime: Runtime) -> None:
    bystanders = [runtime.start(Outside()) for _ in range(4)]
    doomed = runtime.start(Outside())
    bystanders += [runtime.start(Outside()) for _ in range(4)]
    doomed.tell("exit")
    assert doomed.actor_stopped.wait(5)
    for bystander in bystanders:
        assert bystander.actor_stopped.wait(5)


def test_a_proxy_calls_methods_and_reads_and_sets_attributes(runtime: Runtime) -> None:
    proxy = runtime.start(Outside()).proxy()
    assert proxy.add(2).get(timeout=5) == 2
    assert proxy.add(3).get(timeout=5) == 5
    proxy.value = 10
    assert proxy.value.get(timeout=5) == 10


def test_futures_time_out_and_combine(runtime: Runtime) -> None:
    actor = runtime.start(Outside())
    never: pykka.Future[Any] = type(actor.ask("x", block=False))()
    with pytest.raises(pykka.Timeout):
        never.get(timeout=0.01)
    futures = [actor.ask(n, block=False) for n in range(5)]
    assert pykka.get_all(futures, timeout=5) == [0, 1, 2, 3, 4]
    assert actor.ask(4, block=False).map(lambda n: n * 10).get(timeout=5) == 40


# What only the pooled runtime promises.


def test_thousands_of_pooled_actors_share_the_runtimes_one_thread(own_runtime: ActorRuntime) -> None:
    PooledBehaviour.runtime_for_tests = own_runtime
    outside = Outside()
    threads_before = threading.active_count()
    actors = [PooledBehaviour.start(outside) for _ in range(2_000)]
    assert pykka.get_all([actor.ask(n, block=False) for n, actor in enumerate(actors)], timeout=10) == list(
        range(2_000)
    )
    assert threading.active_count() <= threads_before  # not one thread more for 2,000 actors
    assert outside.threads == {"test-runtime"}
    assert own_runtime.actors == 2_000


def test_a_busy_pooled_actor_lets_the_others_run_between_its_turns(own_runtime: ActorRuntime) -> None:
    PooledBehaviour.runtime_for_tests = own_runtime
    shared = Outside()  # both actors write into one list, on the runtime's one thread
    busy, idle = PooledBehaviour.start(shared), PooledBehaviour.start(shared)
    busy.ask("ready")
    idle.ask("ready")

    flooded = threading.Event()

    def flood() -> None:  # on the runtime's thread: every message is in place before a turn runs
        for n in range(MESSAGES_PER_TURN * 4):
            busy.tell(n)
        idle.tell("idle")
        flooded.set()

    own_runtime.call_soon(flood)
    assert flooded.wait(5)
    idle.ask("after")
    busy.ask("after")
    handled = shared.seen[2:]
    assert handled.index("idle") == MESSAGES_PER_TURN  # after one turn of the busy actor, not four
    assert [m for m in handled if isinstance(m, int)] == list(range(MESSAGES_PER_TURN * 4))


def test_waiting_for_a_pooled_actor_on_the_runtimes_thread_raises_instead_of_deadlocking(
    own_runtime: ActorRuntime,
) -> None:
    PooledBehaviour.runtime_for_tests = own_runtime
    actor = PooledBehaviour.start(Outside())
    outcome: list[BaseException | object] = []
    done = threading.Event()

    def wait_on_the_runtime_thread() -> None:
        try:
            outcome.append(actor.ask("hello"))
        except WouldDeadlock as error:
            outcome.append(error)
        done.set()

    own_runtime.call_soon(wait_on_the_runtime_thread)
    assert done.wait(5)
    assert isinstance(outcome[0], WouldDeadlock)
    assert actor.ask("still answering") == "still answering"


def test_a_runtime_on_a_servers_loop_runs_its_actors_on_that_loops_thread() -> None:
    async def scenario() -> tuple[set[str], str]:
        runtime = ActorRuntime(asyncio.get_running_loop(), name="loop-runtime")
        PooledBehaviour.runtime_for_tests = runtime
        outside = Outside()
        actor = PooledBehaviour.start(outside)
        answer = await asyncio.to_thread(actor.ask, "from another thread")
        assert answer == "from another thread"
        await asyncio.to_thread(runtime.shutdown)
        return outside.threads, threading.current_thread().name

    actor_threads, loop_thread = asyncio.run(scenario())
    assert actor_threads == {loop_thread}


def test_shutdown_stops_the_runtimes_actors_and_refuses_new_ones() -> None:
    runtime = ActorRuntime.on_own_thread("short-lived")
    PooledBehaviour.runtime_for_tests = runtime
    outside = Outside()
    actor = PooledBehaviour.start(outside)
    actor.ask("hello")
    runtime.shutdown()
    assert outside.stopped.is_set()
    assert not actor.is_alive()
    with pytest.raises(RuntimeError, match="shut down"):
        PooledBehaviour.start(Outside())


def test_a_timer_fires_on_the_runtimes_thread(own_runtime: ActorRuntime) -> None:
    fired: list[str] = []
    done = threading.Event()

    def fire() -> None:
        fired.append(threading.current_thread().name)
        done.set()

    own_runtime.call_later(0.01, fire)
    assert done.wait(5)
    assert fired == ["test-runtime"]


def test_a_cancelled_timer_does_not_fire(own_runtime: ActorRuntime) -> None:
    fired = threading.Event()
    timer = own_runtime.call_later(0.05, fired.set)
    timer.cancel()
    after = threading.Event()
    own_runtime.call_later(0.1, after.set)
    assert after.wait(5)
    assert not fired.is_set()
