"""The checker, on hand-made histories: each kind of anomaly is found, and nothing else is."""

from __future__ import annotations

from tests.faults.checker import check
from tests.faults.history import FinalState, Outcome, Press

MODES = 24
LOST = ["lost-or-reverted", "api-disagrees", "leds-disagree"]
"""A lost write seen everywhere at the end: in the store, through the API, on the LEDs."""


def press(outcome: Outcome, shown: int | None = None, device: str = "d") -> Press:
    return Press(device, 0.0, 0.0, outcome, shown)


def final(
    store: int | None, api: int | None = None, shown: int | None = None, device: str = "d"
) -> FinalState:
    return FinalState(
        device, store, {"replica1": store if api is None else api}, store if shown is None else shown
    )


def kinds(
    presses: list[Press], finals: dict[str, FinalState], devices: tuple[str, ...] = ("d",)
) -> list[str]:
    return [anomaly.kind for anomaly in check(presses, finals, devices, MODES)]


def test_a_clean_history_has_no_anomaly() -> None:
    presses = [press("ok", 1), press("ok", 2), press("fail", 2), press("ok", 3)]
    assert kinds(presses, {"d": final(3)}) == []


def test_a_lost_acked_write_is_found_with_the_presses_that_led_to_it() -> None:
    presses = [press("ok", 1), press("ok", 2), press("ok", 3)]
    anomaly, *_ = check(presses, {"d": final(2)}, ("d",), MODES)
    assert anomaly.kind == "lost-or-reverted"
    assert "stored mode 2, acked [3]" in anomaly.detail
    assert anomaly.excerpt == tuple(presses)


def test_a_write_reverted_mid_history_is_found_on_the_leds_and_in_the_final_state() -> None:
    # Acked mode 3; the next acked press shows mode 2: the server went back to 1 first.
    presses = [press("ok", 1), press("ok", 2), press("ok", 3), press("ok", 2), press("ok", 3)]
    assert kinds(presses, {"d": final(3)}) == ["led-shows-unacked-mode", *LOST]


def test_a_device_that_kept_pressing_after_a_loss_still_ends_behind() -> None:
    # LEDs never observed (None): the count alone finds two acked presses missing.
    presses = [press("ok")] * 5
    assert kinds(presses, {"d": final(3)}) == LOST
    assert kinds(presses, {"d": final(5)}) == []


def test_an_indeterminate_or_nacked_press_may_or_may_not_have_been_applied() -> None:
    for outcome in ("info", "fail"):
        presses = [press("ok", 1), press(outcome), press("ok")]
        assert kinds(presses, {"d": final(2)}) == []
        assert kinds(presses, {"d": final(3)}) == []
        assert kinds(presses, {"d": final(1)}) == LOST


def test_leds_that_show_the_acked_mode_settle_an_indeterminate_press() -> None:
    presses = [press("info"), press("ok", 2), press("ok")]
    assert kinds(presses, {"d": final(3)}) == []
    assert kinds(presses, {"d": final(2)}) == LOST


def test_leds_still_showing_the_mode_before_the_ack_are_late_not_wrong() -> None:
    presses = [press("ok", 1), press("ok", 1), press("ok", 3)]
    assert kinds(presses, {"d": final(3)}) == []


def test_modes_wrap_around() -> None:
    presses = [press("ok")] * (MODES + 1)
    assert kinds(presses, {"d": final(1)}) == []


def test_a_replica_whose_api_disagrees_and_leds_that_disagree_are_each_reported() -> None:
    presses = [press("ok", 1)]
    assert kinds(presses, {"d": final(1, api=0)}) == ["api-disagrees"]
    assert kinds(presses, {"d": final(1, shown=0)}) == ["leds-disagree"]
    assert kinds(presses, {"d": FinalState("d", 1, {"replica2": None}, 1)}) == ["api-disagrees"]


def test_a_device_with_no_final_state_or_no_record_is_reported() -> None:
    assert kinds([press("ok", 1)], {}) == ["no-final-state"]
    assert kinds([], {"d": final(None, api=0, shown=0)}) == ["lost-or-reverted"]


def test_devices_are_checked_apart() -> None:
    presses = [press("ok", 1, "a"), press("ok", 1, "b"), press("ok", 2, "b")]
    finals = {"a": final(1, device="a"), "b": final(1, device="b")}
    found = check(presses, finals, ("a", "b"), MODES)
    assert [(anomaly.device, anomaly.kind) for anomaly in found] == [("b", kind) for kind in LOST]
