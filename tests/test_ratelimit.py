"""The per-device event rate limit."""

from __future__ import annotations

from rpc.ratelimit import TokenBucket


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
