"""The LED map: status on led_1, the mode on led_2..led_5, led_0 never driven."""

import pytest

from actors.leds import (
    MODE_SHAPES,
    OFF,
    STATUS_ERROR,
    STATUS_IDLE,
    STATUS_PLAYING,
    STATUS_SERVER_LEAVING,
    mode_leds,
    render,
)
from actors.state import DeviceState, Fault, Playback
from media.library import MAX_MODES


def colour(rgba: int) -> int:
    """What the device displays."""
    return rgba >> 8


def test_a_frame_drives_led_1_to_led_5_only() -> None:
    assert len(render(DeviceState())) == 5


def test_idle_playing_and_error_show_different_colours_on_led_1() -> None:
    idle = render(DeviceState())[0]
    playing = render(DeviceState(playing=Playback(1, 0)))[0]
    error = render(DeviceState(fault=Fault.RECOVERED))[0]
    assert len({colour(idle), colour(playing), colour(error)}) == 3
    assert (idle, playing, error) == (STATUS_IDLE.rgba, STATUS_PLAYING.rgba, STATUS_ERROR.rgba)


def test_an_error_shows_even_while_playing() -> None:
    assert render(DeviceState(playing=Playback(1, 0), fault=Fault.AUDIO_LOST))[0] == STATUS_ERROR.rgba


def test_server_leaving_colour_differs_from_every_status() -> None:
    statuses = {colour(s.rgba) for s in (STATUS_IDLE, STATUS_PLAYING, STATUS_ERROR)}
    assert colour(STATUS_SERVER_LEAVING.rgba) not in statuses


def test_every_mode_looks_different_including_mode_0() -> None:
    shown = [tuple(colour(led) for led in mode_leds(mode)) for mode in range(MAX_MODES)]
    assert len(set(shown)) == MAX_MODES
    assert all(any(led != 0 for led in leds) for leds in shown)


def test_exactly_one_shape_is_lit_per_mode() -> None:
    for mode in range(MAX_MODES):
        assert sum(led != OFF for led in mode_leds(mode)) == 1


def test_the_first_modes_walk_the_shapes_in_order() -> None:
    lit = [next(i for i, led in enumerate(mode_leds(mode)) if led != OFF) for mode in range(len(MODE_SHAPES))]
    assert lit == [0, 1, 2, 3]


def test_a_mode_beyond_the_map_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        mode_leds(MAX_MODES)


def test_the_mode_leds_do_not_change_with_playback() -> None:
    assert render(DeviceState(mode=3))[1:] == render(DeviceState(mode=3, playing=Playback(1, 3)))[1:]
