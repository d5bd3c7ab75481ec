"""The per-device event rate limit: how long an event waits for its token, and when a flood is abuse."""

from __future__ import annotations

import pytest

from rpc.ratelimit import Throttle, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_and_the_excess_is_refused() -> None:
    bucket = TokenBucket(rate=10, burst=5, clock=Clock())
    assert [bucket.allow() for _ in range(7)] == [True] * 5 + [False] * 2


def test_tokens_come_back_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    for _ in range(5):
        bucket.allow()
    clock.now = 0.25
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


def test_an_idle_device_saves_up_no_more_than_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    clock.now = 3600
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]


def test_a_steady_device_within_the_rate_is_never_refused() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=20, burst=1, clock=clock)
    results = []
    for tick in range(100):
        clock.now = tick * 0.05
        results.append(bucket.allow())
    assert all(results)


def test_the_wait_is_the_time_until_the_next_token() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    assert bucket.wait_time() == 0.0, "a full bucket: no wait"
    bucket.take()
    bucket.take()
    assert bucket.wait_time() == pytest.approx(0.1)
    clock.now = 0.04
    assert bucket.wait_time() == pytest.approx(0.06)
    clock.now = 0.1
    assert bucket.wait_time() == 0.0


def test_asking_for_the_wait_spends_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, clock=Clock())
    assert [bucket.wait_time() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.allow()


def test_a_token_taken_ahead_of_its_time_makes_the_next_caller_wait_longer() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=1, clock=clock)
    bucket.take()
    bucket.take()  # reserved: due at 0.1 s
    assert bucket.wait_time() == pytest.approx(0.2)
    clock.now = 0.2
    assert bucket.allow()


def test_throttle_handles_events_within_the_burst_at_once() -> None:
    throttle = Throttle(rate=10, burst=3, abuse_after=1.0, clock=Clock())
    assert [throttle.admit(idle=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_throttle_makes_each_event_past_the_burst_wait_one_token_more() -> None:
    throttle = Throttle(rate=10, burst=1, abuse_after=60.0, clock=Clock())
    waits = [throttle.admit(idle=0.0) for _ in range(4)]
    assert waits == [0.0, pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3)]


def test_a_device_over_its_rate_for_longer_than_the_abuse_period_is_abusive() -> None:
    clock = Clock()
    throttle = Throttle(rate=10, burst=1, abuse_after=1.0, clock=clock)
    assert throttle.admit(idle=0.0) == 0.0
    verdicts = []
    for _ in range(12):  # a flood: each event is there the moment the last one is handled
        wait = throttle.admit(idle=0.0)
        verdicts.append(wait)
        if wait is None:
            break
        clock.now += wait
    assert verdicts[:10] == [pytest.approx(0.1)] * 10, "a second of waiting is allowed"
    assert verdicts[10] is None, "the event due later than 1 s into the run is abuse"


def test_a_pause_that_leaves_a_token_unused_ends_the_run() -> None:
    clock = Clock()
    throttle = Throttle(rate=10, burst=1, abuse_after=1.0, clock=clock)
    for _ in range(3):
        for _ in range(8):  # 0.7 s of throttling, then a pause long enough for a token
            wait = throttle.admit(idle=0.0)
            assert wait is not None
            clock.now += wait
        clock.now += 0.1
        assert throttle.admit(idle=0.1) == 0.0
        clock.now += 0.1


def test_a_token_that_piled_up_while_the_server_ran_late_does_not_end_a_flood() -> None:
    clock = Clock()
    throttle = Throttle(rate=10, burst=1, abuse_after=1.0, clock=clock)
    verdicts = []
    for event in range(40):  # a flood: each event is there the moment the last one is handled
        wait = throttle.admit(idle=0.0)
        verdicts.append(wait)
        if wait is None:
            break
        clock.now += wait
        if event % 4 == 3:
            clock.now += 0.15  # the server stalls: a token piles up before it reads on
    assert 0.0 in verdicts[2:], "some events found their token there"
    assert verdicts[-1] is None, "the flood is abuse all the same"
    assert clock.now <= 1.5
