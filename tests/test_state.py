"""The button map and playback rules as pure transitions."""

from actors.state import (
    Button,
    ButtonInput,
    DeviceState,
    Fault,
    Gesture,
    Playback,
    StartPlayback,
    StopPlayback,
    on_audio_lost,
    on_audio_restored,
    on_button,
    on_disconnect,
    on_playback_ended,
)
from media.transport import PlaybackEnd

MODES = 5
MODE = ButtonInput(Button.MODE)
PLAY = ButtonInput(Button.PLAY)
STOP = ButtonInput(Button.STOP)


def press_all(state: DeviceState, *events: ButtonInput) -> DeviceState:
    for event in events:
        state = on_button(state, event, MODES).state
    return state


def test_a_new_device_starts_idle_in_mode_0() -> None:
    assert DeviceState() == DeviceState(mode=0, playing=None, fault=None)


def test_mode_cycles_through_the_modes_and_wraps_around() -> None:
    modes = [press_all(DeviceState(), *[MODE] * n).mode for n in range(7)]
    assert modes == [0, 1, 2, 3, 4, 0, 1]


def test_mode_count_is_configurable() -> None:
    state = DeviceState()
    seen = []
    for _ in range(9):
        state = on_button(state, MODE, 8).state
        seen.append(state.mode)
    assert seen == [1, 2, 3, 4, 5, 6, 7, 0, 1]


def test_play_starts_the_current_modes_sound() -> None:
    state = press_all(DeviceState(), MODE, MODE)
    transition = on_button(state, PLAY, MODES)
    assert transition.accepted
    assert transition.effects == (StartPlayback(Playback(id=1, mode=2)),)
    assert transition.state.playing == Playback(id=1, mode=2)


def test_play_while_playing_preempts_with_the_new_modes_sound() -> None:
    playing = press_all(DeviceState(), MODE, PLAY, MODE)
    transition = on_button(playing, PLAY, MODES)
    assert transition.effects == (
        StopPlayback(Playback(id=1, mode=1), PlaybackEnd.PREEMPTED),
        StartPlayback(Playback(id=2, mode=2)),
    )
    assert transition.state.playing == Playback(id=2, mode=2)


def test_mode_while_playing_changes_the_mode_and_playback_goes_on() -> None:
    playing = press_all(DeviceState(), PLAY)
    transition = on_button(playing, MODE, MODES)
    assert transition.effects == ()
    assert transition.state.mode == 1
    assert transition.state.playing == Playback(id=1, mode=0)


def test_stop_ends_playback_and_returns_to_idle() -> None:
    playing = press_all(DeviceState(), PLAY)
    transition = on_button(playing, STOP, MODES)
    assert transition.effects == (StopPlayback(Playback(id=1, mode=0), PlaybackEnd.STOPPED),)
    assert transition.state.playing is None


def test_stop_while_idle_is_accepted_and_harmless() -> None:
    transition = on_button(DeviceState(mode=3), STOP, MODES)
    assert transition.accepted
    assert transition.effects == ()
    assert transition.state == DeviceState(mode=3)


def test_connect_is_never_acted_on_by_the_server() -> None:
    for gesture in Gesture:
        transition = on_button(DeviceState(), ButtonInput(Button.CONNECT, gesture), MODES)
        assert not transition.accepted
        assert transition.state == DeviceState()


def test_release_is_accepted_and_changes_nothing() -> None:
    playing = press_all(DeviceState(), MODE, PLAY)
    for button in (Button.MODE, Button.PLAY, Button.STOP):
        transition = on_button(playing, ButtonInput(button, Gesture.RELEASE), MODES)
        assert transition.accepted
        assert transition.state == playing
        assert transition.effects == ()


def test_holding_mode_returns_to_mode_0() -> None:
    state = press_all(DeviceState(), MODE, MODE, MODE)
    assert on_button(state, ButtonInput(Button.MODE, Gesture.HOLD), MODES).state.mode == 0


def test_holding_stop_stops_like_a_press() -> None:
    playing = press_all(DeviceState(), PLAY)
    transition = on_button(playing, ButtonInput(Button.STOP, Gesture.HOLD), MODES)
    assert transition.accepted
    assert transition.state.playing is None


def test_holding_play_is_refused() -> None:
    transition = on_button(DeviceState(), ButtonInput(Button.PLAY, Gesture.HOLD), MODES)
    assert not transition.accepted
    assert transition.effects == ()


def test_the_end_of_the_current_playback_returns_to_idle() -> None:
    playing = press_all(DeviceState(), PLAY)
    assert on_playback_ended(playing, 1, PlaybackEnd.COMPLETED).state.playing is None


def test_the_end_of_a_preempted_playback_is_ignored() -> None:
    playing = press_all(DeviceState(), PLAY, PLAY)
    assert on_playback_ended(playing, 1, PlaybackEnd.STOPPED).state.playing == Playback(2, 0)


def test_a_disconnect_stops_playback_and_keeps_the_mode() -> None:
    playing = press_all(DeviceState(), MODE, PLAY)
    transition = on_disconnect(playing)
    assert transition.effects == (StopPlayback(Playback(1, 1), PlaybackEnd.DISCONNECTED),)
    assert transition.state.mode == 1
    assert transition.state.playing is None


def test_losing_the_audio_stream_stops_playback_and_shows_a_fault_until_it_returns() -> None:
    lost = on_audio_lost(press_all(DeviceState(), PLAY))
    assert lost.state.fault is Fault.AUDIO_LOST
    assert lost.state.playing is None
    assert on_audio_restored(lost.state).state.fault is None


def test_a_recovered_fault_clears_on_the_next_accepted_press() -> None:
    recovered = DeviceState(fault=Fault.RECOVERED)
    assert on_button(recovered, MODE, MODES).state.fault is None


def test_a_state_from_a_config_with_more_modes_starts_over_at_mode_0() -> None:
    assert DeviceState(mode=7).fitted_to(5).mode == 0
    assert DeviceState(mode=4).fitted_to(5).mode == 4
