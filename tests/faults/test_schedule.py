"""The schedule generator: reproducible from its seed, every fault healed inside the window."""

from __future__ import annotations

import itertools

from tests.faults.schedule import REPLICA_FAULTS, Fault, generate


def test_the_same_seed_gives_the_same_schedule_and_other_seeds_other_ones() -> None:
    assert generate(7) == generate(7)
    assert len({generate(seed).steps for seed in range(20)}) == 20


def test_every_step_heals_inside_the_window_and_targets_exist() -> None:
    for seed in range(300):
        schedule = generate(seed, window=6.0)
        assert schedule.steps, seed
        for step in schedule.steps:
            assert 0 < step.at < step.heals_at <= schedule.window + 1e-9, (seed, step)
            bound = schedule.devices if step.fault is Fault.REBOOT_DEVICE else schedule.replicas
            assert 0 <= step.target < bound, (seed, step)


def test_one_replica_fault_at_a_time_and_no_target_faulted_twice_at_once() -> None:
    for seed in range(300):
        steps = generate(seed).steps
        groups = [
            [step for step in steps if step.fault in REPLICA_FAULTS],
            [step for step in steps if step.fault is Fault.KILL_REDIS],
            *(
                [step for step in steps if step.fault is Fault.REBOOT_DEVICE and step.target == device]
                for device in range(24)
            ),
        ]
        for group in groups:
            for earlier, later in itertools.pairwise(group):
                assert later.at >= earlier.heals_at, (seed, earlier, later)


def test_every_kind_of_fault_is_drawn_and_a_kind_can_be_left_out() -> None:
    drawn = {step.fault for seed in range(50) for step in generate(seed).steps}
    assert drawn == set(Fault)
    only = (Fault.KILL_REDIS, Fault.REBOOT_DEVICE)
    assert {step.fault for seed in range(50) for step in generate(seed, faults=only).steps} <= set(only)


def test_sizes_can_be_fixed_and_are_drawn_within_bounds_otherwise() -> None:
    assert (generate(3, replicas=2, devices=5).replicas, generate(3, replicas=2, devices=5).devices) == (2, 5)
    for seed in range(100):
        schedule = generate(seed)
        assert schedule.replicas in (2, 3)
        assert 4 <= schedule.devices <= 24
