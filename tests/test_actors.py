"""Actor-level behaviour: fake button messages in; LED states, audio commands and acks out. No network."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from actors.lease import UNLEASED, Lease
from actors.leds import (
    STATUS_BUSY,
    STATUS_ERROR,
    STATUS_IDLE,
    STATUS_PLAYING,
    STATUS_SERVER_LEAVING,
    mode_leds,
    render,
)
from actors.messages import Drain, LeaseEnded, Refusal, StreamClosed, StreamGrant, StreamKind, StreamRefused
from actors.ports import CloseCause
from actors.state import Button, DeviceState, Gesture
from actors.supervisor import SupervisorPolicy
from media.admission import AdmissionPolicy, StreamAdmission
from media.library import SoundLibrary
from media.transport import PlaybackEnd
from tests.actor_fleet import ALL_KINDS, ActorFleet
from tests.fakes import FakeLink

OTHER_PEER = "ipv4:127.0.0.1:2000"


@pytest.fixture
def make_fleet(library: SoundLibrary) -> Iterator[Callable[..., ActorFleet]]:
    fleets: list[ActorFleet] = []

    def make(policy: SupervisorPolicy | None = None, admission: StreamAdmission | None = None) -> ActorFleet:
        fleets.append(ActorFleet(library, policy, admission))
        return fleets[-1]

    yield make
    for fleet in fleets:
        fleet.shutdown()


@pytest.fixture
def fleet(make_fleet: Callable[..., ActorFleet]) -> ActorFleet:
    return make_fleet()


def status_led(link: FakeLink) -> int:
    return link.led_outlet.latest[0]


def test_a_new_device_shows_idle_in_mode_0_as_soon_as_it_connects(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    link.led_outlet.frames.wait_for(lambda frames: len(frames) >= 1)
    assert link.led_outlet.latest == render(DeviceState())


def test_mode_is_acked_and_shows_the_next_mode(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    assert fleet.press("kitchen", Button.MODE)
    assert link.led_outlet.latest[1:] == mode_leds(1)


def test_mode_wraps_around_after_the_last_mode(fleet: ActorFleet, library: SoundLibrary) -> None:
    link = fleet.connect("kitchen")
    for _ in range(library.modes):
        fleet.press("kitchen", Button.MODE)
    assert link.led_outlet.latest[1:] == mode_leds(0)


def test_play_streams_the_current_modes_sound_and_shows_playing(
    fleet: ActorFleet, library: SoundLibrary
) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    fleet.press("kitchen", Button.MODE)
    assert fleet.press("kitchen", Button.PLAY)
    assert link.audio_outlet.commands.items == [("play", library.for_mode(2).name)]
    assert status_led(link) == STATUS_PLAYING.rgba


def test_the_end_of_a_sound_returns_the_leds_to_idle(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.PLAY)
    link.audio_outlet.finish_latest()
    link.led_outlet.frames.wait_for(lambda frames: bool(frames) and frames[-1][0] == STATUS_IDLE.rgba)


def test_stop_ends_the_stream_and_returns_to_idle(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.PLAY)
    assert fleet.press("kitchen", Button.STOP)
    assert link.audio_outlet.commands.items[-1] == ("stop",)
    assert status_led(link) == STATUS_IDLE.rgba


def test_stop_while_idle_is_acked_and_sends_nothing(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    assert fleet.press("kitchen", Button.STOP)
    assert link.audio_outlet.commands.items == []


def test_play_while_playing_ends_the_old_sound_and_starts_the_new_mode(
    fleet: ActorFleet, library: SoundLibrary
) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    fleet.press("kitchen", Button.PLAY)
    fleet.press("kitchen", Button.MODE)
    fleet.press("kitchen", Button.PLAY)
    assert link.audio_outlet.commands.items == [
        ("play", library.for_mode(1).name),
        ("stop",),
        ("play", library.for_mode(2).name),
    ]
    assert status_led(link) == STATUS_PLAYING.rgba


def test_a_preempted_sounds_end_does_not_return_to_idle(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.PLAY)
    fleet.press("kitchen", Button.PLAY)
    link.audio_outlet.callbacks[0](PlaybackEnd.STOPPED)
    fleet.status()
    fleet.press("kitchen", Button.MODE, Gesture.RELEASE)
    assert status_led(link) == STATUS_PLAYING.rgba


def test_mode_while_playing_changes_the_mode_leds_and_playback_goes_on(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.PLAY)
    fleet.press("kitchen", Button.MODE)
    assert len(link.audio_outlet.commands.items) == 1
    assert link.led_outlet.latest == (STATUS_PLAYING.rgba, *mode_leds(1))


def test_connect_and_hold_play_are_nacked(fleet: ActorFleet) -> None:
    fleet.connect("kitchen")
    assert not fleet.press("kitchen", Button.CONNECT)
    assert not fleet.press("kitchen", Button.PLAY, Gesture.HOLD)


def test_release_is_acked_and_holding_mode_returns_to_mode_0(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    fleet.press("kitchen", Button.MODE)
    assert fleet.press("kitchen", Button.MODE, Gesture.RELEASE)
    assert fleet.press("kitchen", Button.MODE, Gesture.HOLD)
    assert link.led_outlet.latest[1:] == mode_leds(0)


def test_devices_keep_separate_state(fleet: ActorFleet) -> None:
    kitchen = fleet.connect("kitchen")
    hall = fleet.connect("hall", peer=OTHER_PEER)
    fleet.press("kitchen", Button.MODE)
    fleet.press("hall", Button.PLAY)
    assert kitchen.led_outlet.latest == (STATUS_IDLE.rgba, *mode_leds(1))
    assert hall.led_outlet.latest == (STATUS_PLAYING.rgba, *mode_leds(0))
    assert kitchen.audio_outlet.commands.items == []


def test_a_closed_stream_stops_playback_and_the_device_stays_connected(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.PLAY)
    fleet.close("kitchen", StreamKind.STATUS)
    assert fleet.press("kitchen", Button.MODE)
    assert link.audio_outlet.commands.items[-1] == ("stop",)
    assert fleet.status().connected == 1


def test_losing_only_the_audio_stream_shows_an_error_until_it_returns(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.close("kitchen", StreamKind.AUDIO)
    fleet.status()
    link.led_outlet.frames.wait_for(lambda frames: bool(frames) and frames[-1][0] == STATUS_ERROR.rgba)
    fleet.open("kitchen", StreamKind.AUDIO)
    link.led_outlet.frames.wait_for(lambda frames: bool(frames) and frames[-1][0] == STATUS_IDLE.rgba)


def test_the_actor_retires_when_all_streams_are_gone_and_the_mode_is_kept(fleet: ActorFleet) -> None:
    fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    fleet.press("kitchen", Button.MODE)
    fleet.press("kitchen", Button.PLAY)
    fleet.disconnect("kitchen")
    fleet.wait_for_status(lambda status: status.connected == 0 and status.retiring == 0)
    assert fleet.store.load("kitchen") == DeviceState(mode=2, next_playback_id=2)
    again = fleet.connect("kitchen")
    again.led_outlet.frames.wait_for(lambda frames: len(frames) >= 1)
    assert again.led_outlet.latest == (STATUS_IDLE.rgba, *mode_leds(2))


def test_events_for_a_retired_connection_are_nacked(fleet: ActorFleet) -> None:
    fleet.connect("kitchen")
    grant = fleet.grants[("kitchen", StreamKind.EVENTS)]
    fleet.disconnect("kitchen")
    fleet.grants[("kitchen", StreamKind.EVENTS)] = grant
    assert not fleet.press("kitchen", Button.MODE)


def test_a_newer_stream_of_a_kind_the_device_has_takes_its_place(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    fleet.press("kitchen", Button.PLAY)
    old = {kind: fleet.grants[("kitchen", kind)] for kind in ALL_KINDS}
    assert fleet.connect("kitchen", peer=OTHER_PEER) is link, "the device keeps its link"
    new = {kind: fleet.grants[("kitchen", kind)] for kind in ALL_KINDS}
    assert all(new[kind].stream > old[kind].stream for kind in ALL_KINDS)
    # A newer audio stream belongs to a device that never heard the start: playback stops.
    link.audio_outlet.commands.wait_for(lambda commands: bool(commands) and commands[-1] == ("stop",))
    assert link.closed.items == []
    # The older streams' calls ending later neither retire the device nor count as lost streams.
    for kind, grant in old.items():
        fleet.supervisor.tell(StreamClosed("kitchen", grant.session, grant.stream, kind))
    assert fleet.status().connected == 1
    assert fleet.press("kitchen", Button.MODE)
    assert link.led_outlet.latest == (STATUS_IDLE.rgba, *mode_leds(2))


def test_a_failing_device_actor_is_restarted_from_its_last_state(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    link.audio_outlet.fail_next_play = True
    assert not fleet.press("kitchen", Button.PLAY)
    fleet.wait_for_status(lambda status: status.restarts == 1)
    link.led_outlet.frames.wait_for(
        lambda frames: bool(frames) and frames[-1] == (STATUS_ERROR.rgba, *mode_leds(1))
    )
    assert fleet.press("kitchen", Button.MODE)
    assert link.led_outlet.latest == (STATUS_IDLE.rgba, *mode_leds(2))


def test_a_device_actor_that_keeps_failing_has_its_connection_ended(
    make_fleet: Callable[..., ActorFleet],
) -> None:
    fleet = make_fleet(SupervisorPolicy(max_restarts=2))
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    for restarts in range(3):
        link.audio_outlet.fail_next_play = True
        fleet.press("kitchen", Button.PLAY)
        fleet.wait_for_status(lambda status: status.restarts > restarts or status.connected == 0)  # noqa: B023
    cause, _ = link.closed.wait_for(lambda items: len(items) == 1)[0]
    assert cause is CloseCause.FAILED
    assert fleet.status().connected == 0
    assert fleet.store.load("kitchen") == DeviceState(mode=1, next_playback_id=1)


def test_devices_beyond_the_limit_are_refused_as_overloaded(make_fleet: Callable[..., ActorFleet]) -> None:
    fleet = make_fleet(SupervisorPolicy(max_devices=1))
    fleet.connect("kitchen")
    refused = fleet.open("hall", StreamKind.STATUS)
    assert isinstance(refused, StreamRefused)
    assert refused.why is Refusal.FULL
    assert isinstance(fleet.open("kitchen", StreamKind.STATUS), StreamGrant)


def test_draining_stops_playback_shows_leaving_and_refuses_new_streams(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.PLAY)
    fleet.supervisor.tell(Drain())
    refused = fleet.open("hall", StreamKind.STATUS)
    assert isinstance(refused, StreamRefused)
    assert refused.why is Refusal.DRAINING
    link.led_outlet.frames.wait_for(
        lambda frames: bool(frames) and frames[-1][0] == STATUS_SERVER_LEAVING.rgba
    )
    assert link.audio_outlet.commands.items[-1] == ("stop",)


def test_streams_from_different_peers_make_one_session(fleet: ActorFleet) -> None:
    """Behind an L7 proxy each of a device's streams may arrive over another upstream connection."""
    grants = [fleet.open("kitchen", kind, f"ipv4:127.0.0.1:{4000 + n}") for n, kind in enumerate(ALL_KINDS)]
    assert all(isinstance(grant, StreamGrant) for grant in grants)
    assert len({grant.session for grant in grants if isinstance(grant, StreamGrant)}) == 1
    assert len(fleet.links) == 1
    assert fleet.press("kitchen", Button.PLAY)
    assert fleet.link_of("kitchen").audio_outlet.commands.items[-1][0] == "play"
    assert fleet.link_of("kitchen").closed.items == []


def one_stream_fleet(make_fleet: Callable[..., ActorFleet]) -> ActorFleet:
    return make_fleet(admission=StreamAdmission(AdmissionPolicy(max_streams=1)))


def test_a_play_beyond_the_audio_capacity_is_nacked_and_shows_busy_for_a_moment(
    make_fleet: Callable[..., ActorFleet],
) -> None:
    fleet = one_stream_fleet(make_fleet)
    fleet.connect("kitchen")
    hall = fleet.connect("hall")
    assert fleet.press("kitchen", Button.PLAY)
    assert not fleet.press("hall", Button.PLAY)
    assert hall.audio_outlet.commands.items == []
    assert status_led(hall) == STATUS_BUSY.rgba
    hall.led_outlet.frames.wait_for(lambda frames: frames[-1][0] == STATUS_IDLE.rgba, timeout=5)
    assert fleet.admission.active == 1


def test_an_accepted_press_ends_the_busy_notice_at_once(make_fleet: Callable[..., ActorFleet]) -> None:
    fleet = one_stream_fleet(make_fleet)
    fleet.connect("kitchen")
    hall = fleet.connect("hall")
    fleet.press("kitchen", Button.PLAY)
    fleet.press("hall", Button.PLAY)
    assert fleet.press("hall", Button.MODE)
    assert hall.led_outlet.latest == (STATUS_IDLE.rgba, *mode_leds(1))


def test_a_preempting_play_at_capacity_is_accepted(make_fleet: Callable[..., ActorFleet]) -> None:
    fleet = one_stream_fleet(make_fleet)
    kitchen = fleet.connect("kitchen")
    fleet.press("kitchen", Button.PLAY)
    fleet.press("kitchen", Button.MODE)
    assert fleet.press("kitchen", Button.PLAY)
    assert [command[0] for command in kitchen.audio_outlet.commands.items] == ["play", "stop", "play"]


def test_a_stream_that_ends_gives_its_place_to_the_next_play(make_fleet: Callable[..., ActorFleet]) -> None:
    fleet = one_stream_fleet(make_fleet)
    kitchen = fleet.connect("kitchen")
    fleet.connect("hall")
    fleet.press("kitchen", Button.PLAY)
    kitchen.audio_outlet.finish_latest()  # the transport reports the end of the sound
    kitchen.led_outlet.frames.wait_for(lambda frames: frames[-1][0] == STATUS_IDLE.rgba)
    assert fleet.press("hall", Button.PLAY)


def test_streams_opened_while_the_device_retires_wait_and_resume_its_final_state(fleet: ActorFleet) -> None:
    fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    fleet.press("kitchen", Button.MODE)
    fleet.disconnect("kitchen")  # Retire is on its way to the actor...
    again = fleet.connect("kitchen", OTHER_PEER)  # ...and the device is back at once
    assert again.led_outlet.frames.wait_for(bool)[-1] == (STATUS_IDLE.rgba, *mode_leds(2))
    assert fleet.press("kitchen", Button.MODE)
    assert again.led_outlet.latest == (STATUS_IDLE.rgba, *mode_leds(3))


def test_pressing_play_again_while_busy_keeps_busy_lit_without_an_led_change(
    make_fleet: Callable[..., ActorFleet],
) -> None:
    fleet = one_stream_fleet(make_fleet)
    fleet.connect("kitchen")
    hall = fleet.connect("hall")
    fleet.press("kitchen", Button.PLAY)
    assert not fleet.press("hall", Button.PLAY)
    shown = len(hall.led_outlet.frames.items)
    for _ in range(5):
        assert not fleet.press("hall", Button.PLAY)
    assert len(hall.led_outlet.frames.items) == shown
    assert status_led(hall) == STATUS_BUSY.rgba


def test_an_admitted_play_that_fails_to_start_gives_its_place_back(
    make_fleet: Callable[..., ActorFleet],
) -> None:
    fleet = one_stream_fleet(make_fleet)
    kitchen = fleet.connect("kitchen")
    kitchen.audio_outlet.fail_next_play = True
    assert not fleet.press("kitchen", Button.PLAY)
    fleet.wait_for_status(lambda status: status.restarts == 1)
    assert fleet.admission.active == 0
    assert fleet.press("kitchen", Button.PLAY)


def test_a_device_taken_over_elsewhere_ends_its_streams_aborted_and_saves_nothing(fleet: ActorFleet) -> None:
    link = fleet.connect("kitchen")
    fleet.press("kitchen", Button.MODE)
    fleet.commits.commit()
    assert fleet.store.load("kitchen") == DeviceState(mode=1)
    fleet.store.save("kitchen", DeviceState(mode=3))  # what the new owner saved
    fleet.supervisor.tell(LeaseEnded(Lease("kitchen", UNLEASED)))
    link.closed.wait_for(lambda closed: bool(closed))
    assert link.closed.items[0][0] is CloseCause.LEASE_ENDED
    assert "served by another server" in link.closed.items[0][1]
    fleet.wait_for_status(lambda status: status.connected == 0 and status.retiring == 0)
    fleet.commits.commit()
    assert fleet.store.load("kitchen") == DeviceState(mode=3), "its stale state was not saved over it"
