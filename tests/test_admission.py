"""Admission control and elastic packing as pure logic: a clock passed in, no threads, no sleeps."""

from __future__ import annotations

import logging

import pytest

from media.admission import AdmissionPolicy, StreamAdmission, Ticket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def late_ticks(admission: StreamAdmission, lateness: float = 0.2) -> int:
    """As many late ticks in a row as an overload makes; how many streams they asked to shed."""
    return sum(admission.observe_lateness(lateness) for _ in range(admission.policy.late_ticks))


def admit_all(admission: StreamAdmission, count: int) -> list[Ticket]:
    tickets = [admission.admit() for _ in range(count)]
    assert all(ticket is not None for ticket in tickets)
    return [ticket for ticket in tickets if ticket is not None]


def streaming(admission: StreamAdmission, busy: float) -> None:
    """One interval of load: the active streams at the current packing, the loop ``busy``."""
    policy = admission.policy
    admission.observe_load(busy, admission.active / (admission.frames_per_packet() * policy.frame_duration))


def test_a_configured_budget_admits_up_to_it_at_once_and_refuses_the_next() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=3), Clock())
    admit_all(admission, 3)
    assert admission.admit() is None
    assert admission.active == 3


def test_a_released_ticket_makes_room_for_one_more_and_releasing_twice_counts_once() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=1), Clock())
    (ticket,) = admit_all(admission, 1)
    ticket.release()
    ticket.release()
    assert admission.active == 0
    admit_all(admission, 1)
    assert admission.admit() is None


def test_a_preempting_play_is_admitted_even_at_capacity() -> None:
    admission = StreamAdmission(AdmissionPolicy(max_streams=1), Clock())
    admit_all(admission, 1)
    assert admission.admit(replacing=True) is not None


def test_a_burst_from_an_idle_server_is_admitted_as_far_as_the_largest_packets_carry_it() -> None:
    admission = StreamAdmission(AdmissionPolicy(), Clock())
    admission.observe_load(0.05, 0.0)  # an idle fleet: the loop 5 % busy, no packets
    # 100 us a packet (the prior), 120 ms packets: 8.3 packets/s a stream, under 90 % of the loop.
    expected = int((0.9 - admission.base) / (100e-6 / 0.12))
    assert admission.capacity == expected
    assert expected > 900
    admit_all(admission, expected)
    assert admission.admit() is None


def test_an_idle_server_keeps_one_frame_per_packet_and_packets_grow_with_the_load() -> None:
    admission = StreamAdmission(AdmissionPolicy(), Clock())
    assert admission.frames_per_packet() == 1
    admit_all(admission, 20)
    assert admission.frames_per_packet() == 1, "20 streams at 20 ms: 1,000 packets/s, 10 % of the loop"
    tickets = admit_all(admission, 380)
    # 400 streams: 20,000 packets/s at 20 ms would be 200 % of the loop; 80 ms packets make it 50 %.
    assert admission.frames_per_packet() == 4
    for ticket in tickets:
        ticket.release()
    assert admission.frames_per_packet() == 1, "the load is gone: back to 20 ms packets"


def test_the_measured_cost_of_a_packet_replaces_the_prior() -> None:
    admission = StreamAdmission(AdmissionPolicy(), Clock())
    admission.observe_load(0.1, 0.0)
    admit_all(admission, 100)
    packets_per_second = 100 / (admission.frames_per_packet() * 0.02)
    admission.observe_load(0.9, packets_per_second)  # the reading while they started: skipped
    admission.observe_load(0.1 + packets_per_second * 40e-6, packets_per_second)  # 40 us a packet
    assert admission.measured
    assert admission.packet_cost == pytest.approx(40e-6, rel=0.01)
    capacity = admission.capacity
    assert capacity is not None
    assert capacity == pytest.approx((0.9 - 0.1) / (40e-6 / 0.12), rel=0.01)


def test_the_load_while_streams_are_being_started_only_bounds_the_cost_of_a_packet() -> None:
    admission = StreamAdmission(AdmissionPolicy(), Clock())
    admission.observe_load(0.05, 0.0)
    admit_all(admission, 500)  # an announcement: its commands, LED changes and starts are work too
    streaming(admission, busy=0.95)  # dearer than the prior says: proves nothing
    assert not admission.measured
    assert admission.packet_cost == admission.policy.prior_packet_cost
    admit_all(admission, 100)
    streaming(admission, busy=0.35)  # cheaper: packets cost at most this, starts included
    assert admission.packet_cost == pytest.approx(0.3 / (600 / 0.12))
    assert not admission.measured
    streaming(admission, busy=0.5)  # the next reading, with no stream started: a packet's cost
    assert admission.measured


def test_too_few_packets_say_nothing_about_the_cost_of_one() -> None:
    admission = StreamAdmission(AdmissionPolicy(), Clock())
    admit_all(admission, 2)
    streaming(admission, busy=0.5)  # 100 packets/s: the busy loop is something else
    assert not admission.measured
    assert admission.packet_cost == admission.policy.prior_packet_cost


def test_a_busier_loop_lowers_the_capacity_and_refuses_new_streams_while_the_old_play_on() -> None:
    admission = StreamAdmission(AdmissionPolicy(), Clock())
    tickets = admit_all(admission, 300)
    for _ in range(20):
        streaming(admission, busy=0.95)  # another load shares the core: packets look dear
    assert admission.frames_per_packet() == 6
    capacity = admission.capacity
    assert capacity is not None
    assert capacity < 300
    assert admission.admit() is None
    assert admission.active == len(tickets), "nothing admitted is taken away by the estimate"


def test_one_late_tick_is_a_pause_not_an_overload() -> None:
    admission = StreamAdmission(AdmissionPolicy(), Clock())
    admit_all(admission, 50)
    for _ in range(10):
        assert admission.observe_lateness(0.2) == 0
        admission.observe_lateness(0.0)
    assert admission.frames_per_packet() == 1


def test_late_pacing_grows_every_stream_to_the_largest_packets_at_once() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(), clock)
    admit_all(admission, 50)
    assert admission.frames_per_packet() == 1
    assert late_ticks(admission) == 0, "first the packets grow: nobody is shed yet"
    assert admission.frames_per_packet() == 6


def test_still_late_at_the_largest_packets_sheds_the_newest_tenth_and_holds_the_capacity() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(), clock)
    admit_all(admission, 200)
    late_ticks(admission)
    clock.now += admission.policy.shed_grace / 2
    assert late_ticks(admission) == 0, "the larger packets get their chance first"
    clock.now += admission.policy.shed_grace
    assert late_ticks(admission) == 20
    assert admission.ceiling == 180
    assert admission.capacity == 180


def test_lateness_that_falls_is_a_burst_being_worked_off_and_nobody_is_shed() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(), clock)
    admit_all(admission, 200)
    lateness = 0.3
    for _ in range(40):  # two seconds of late ticks, each less late than the one before
        assert admission.observe_lateness(lateness) == 0
        clock.now += 0.05
        lateness *= 0.98
    assert admission.ceiling is None
    assert admission.frames_per_packet() == 6, "the packets grew all the same"


def test_a_break_in_the_lateness_starts_the_grace_again() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(), clock)
    admit_all(admission, 100)
    late_ticks(admission)
    clock.now += admission.policy.shed_grace * 0.9
    admission.observe_lateness(0.0)
    late_ticks(admission)
    clock.now += admission.policy.shed_grace * 0.9
    assert late_ticks(admission) == 0


def test_shedding_happens_at_most_once_per_cooldown() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(), clock)
    admit_all(admission, 100)
    late_ticks(admission)
    clock.now += admission.policy.shed_grace
    assert late_ticks(admission) == 10
    clock.now += admission.policy.shed_cooldown / 2
    assert late_ticks(admission) == 0
    clock.now += admission.policy.shed_cooldown
    assert late_ticks(admission) == 10


def test_on_time_pacing_at_the_held_capacity_lets_it_grow_back_slowly() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(), clock)
    tickets = admit_all(admission, 100)
    late_ticks(admission)
    clock.now += admission.policy.shed_grace
    late_ticks(admission)
    for ticket in tickets[90:]:
        ticket.release()  # the transport ended the shed streams
    assert admission.ceiling == 90
    admission.observe_lateness(0.0)
    assert admission.ceiling == 90, "not before the probe interval"
    clock.now += admission.policy.probe_interval
    admission.observe_lateness(0.0)
    assert admission.ceiling == 91


def test_the_largest_packets_are_kept_a_while_after_the_last_late_tick() -> None:
    clock = Clock()
    admission = StreamAdmission(AdmissionPolicy(), clock)
    admit_all(admission, 10)
    late_ticks(admission)
    admission.observe_lateness(0.0)
    streaming(admission, 0.1)
    assert admission.frames_per_packet() == 6
    clock.now += admission.policy.pressure_hold
    streaming(admission, 0.1)
    assert admission.frames_per_packet() == 1


def test_with_learning_off_and_no_budget_everything_is_admitted_at_one_frame_and_nothing_is_shed() -> None:
    admission = StreamAdmission(AdmissionPolicy(learn=False), Clock())
    admit_all(admission, 5000)
    assert late_ticks(admission, 5.0) == 0
    admission.observe_load(1.0, 250_000)
    assert admission.capacity is None
    assert admission.frames_per_packet() == 1


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
