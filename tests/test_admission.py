"""Admission control as pure logic: a clock passed in, no threads, no sleeps."""

from __future__ import annotations

import logging

import pytest

from media.admission import AdmissionPolicy, StreamAdmission, Ticket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def late_ticks(admission: StreamAdmission, lateness: float = 0.2) -> None:
    """As many late ticks in a row as an overload makes."""
    for _ in range(admission.policy.late_ticks):
        admission.observe_lateness(lateness)


def admit_all(admission: StreamAdmission, count: int) -> list[Ticket]:
    tickets = [admission.admit() for _ in range(count)]
    assert all(ticket is not None for ticket in tickets)
    return [ticket for ticket in tickets if ticket is not None]


def test_a_configured_budget_admits_up_to_it_at_once_and_refuses_the_next() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=300), Clock())
    admit_all(admission, 300)
    assert admission.admit() is None
    assert admission.active == 300


def test_a_released_ticket_makes_room_for_one_more_and_releasing_twice_counts_once() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=2), Clock())
    first, _ = admit_all(admission, 2)
    first.release()
    first.release()
    assert admission.active == 1
    assert admission.admit() is not None
    assert admission.admit() is None


def test_a_preempting_play_is_admitted_even_at_capacity() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=1), Clock())
    admit_all(admission, 1)
    assert admission.admit(replacing=True) is not None


def test_late_pacing_cuts_the_capacity_to_ninety_percent_of_what_streams() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(max_streams=1000), clock)
    admit_all(admission, 500)
    late_ticks(admission)
    assert admission.learned == 450
    assert admission.capacity == 450
    assert admission.admit() is None


def test_one_late_tick_is_a_pause_not_an_overload() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=1000), Clock())
    admit_all(admission, 500)
    for _ in range(20):
        admission.observe_lateness(0.2)
        admission.observe_lateness(0.0)
    assert admission.learned is None


def test_the_learned_capacity_never_drops_below_its_floor() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=1000, min_learned=16), Clock())
    admit_all(admission, 3)
    late_ticks(admission)
    assert admission.learned == 16


def test_lateness_within_the_limit_learns_nothing() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=1000, lateness_limit=0.075), Clock())
    admit_all(admission, 500)
    admission.observe_lateness(0.07)
    assert admission.learned is None


def test_the_capacity_is_cut_at_most_once_per_cooldown() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(max_streams=1000, cooldown=1.0), clock)
    admit_all(admission, 500)
    late_ticks(admission)
    clock.now += 0.5
    late_ticks(admission)
    assert admission.learned == 450
    clock.now += 0.6
    late_ticks(admission)
    assert admission.learned == 450  # 90 % of the 500 still streaming


def test_on_time_pacing_at_the_learned_capacity_probes_upwards_slowly() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(max_streams=1000, probe_interval=2.0), clock)
    tickets = admit_all(admission, 500)
    late_ticks(admission)
    for ticket in tickets[450:]:
        ticket.release()
    clock.now += 1.0
    admission.observe_lateness(0.0)
    assert admission.learned == 450  # not before the probe interval
    clock.now += 1.0
    admission.observe_lateness(0.0)
    assert admission.learned == 459


def test_below_the_learned_capacity_nothing_is_probed() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(max_streams=1000), clock)
    tickets = admit_all(admission, 500)
    late_ticks(admission)
    for ticket in tickets[100:]:
        ticket.release()
    clock.now += 10
    admission.observe_lateness(0.0)
    assert admission.learned == 450


def test_without_a_budget_or_a_learned_limit_a_burst_ramps_up_a_quarter_per_window() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(ramp_floor=16, ramp_window=0.125), clock)
    admit_all(admission, 16)
    assert admission.admit() is None
    clock.now += 0.125
    admit_all(admission, 16)  # a quarter of 16 is less than the floor
    clock.now += 0.125
    admit_all(admission, 16)
    clock.now += 0.125
    admit_all(admission, 16)  # 48 streaming: a quarter is 12, the floor still wins
    clock.now += 0.125
    assert admission.active == 64
    admit_all(admission, 16)
    assert admission.admit() is None


def test_with_learning_off_and_no_budget_everything_is_admitted() -> None:
    admission = StreamAdmission(AdmissionPolicy(learn=False), Clock())
    admit_all(admission, 5000)
    admission.observe_lateness(5.0)
    assert admission.capacity is None


def test_a_burst_of_refusals_is_logged_once_and_the_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    refused: list[None] = []
    admission = StreamAdmission(
        AdmissionPolicy(max_streams=1), Clock(), on_refused=lambda: refused.append(None)
    )
    (ticket,) = admit_all(admission, 1)
    with caplog.at_level(logging.INFO, logger="media.admission"):
        for _ in range(100):
            assert admission.admit() is None
        ticket.release()
        admit_all(admission, 1)
    messages = [record.getMessage() for record in caplog.records]
    assert len(refused) == 100
    assert len(messages) == 2
    assert "refusing new streams" in messages[0]
    assert "after refusing 100" in messages[1]


def test_the_cpu_share_of_the_streams_estimates_how_many_the_core_carries() -> None:
    admission = StreamAdmission(AdmissionPolicy(cpu_target=0.8), Clock())
    admit_all(admission, 16)
    admission.observe_cpu(0.1)  # 16 streams take a tenth of a core
    assert admission.estimated == 128
    admit_all(admission, 112)
    assert admission.admit() is None


def test_too_few_streams_say_nothing_about_the_cost_of_one() -> None:
    admission = StreamAdmission(AdmissionPolicy(min_sample=8), Clock())
    admit_all(admission, 7)
    admission.observe_cpu(0.5)
    assert admission.estimated is None


def test_a_busier_core_lowers_the_estimate_and_refuses_new_streams_while_the_old_play_on() -> None:
    admission = StreamAdmission(AdmissionPolicy(cpu_target=0.8), Clock())
    admit_all(admission, 16)
    admission.observe_cpu(0.05)
    admit_all(admission, 200)
    admission.observe_cpu(0.95)  # 216 streams and the core is nearly full
    assert admission.estimated == 181
    assert admission.admit() is None
    assert admission.active == 216
