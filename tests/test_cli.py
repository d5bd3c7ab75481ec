"""acp-admin (admin/cli.py): its parsing and formatting without a server, then against the real one."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors.leds import STATUS_IDLE, mode_leds
from admin import cli
from admin.cli import SseEvent, SseParser
from admin.fleetview import hex_colour
from media.library import SoundLibrary
from simulator import Button
from tests.admin_live import Operated, operated
from tests.audio_files import write_tone
from tests.live import holds_the_whole_sound, run, shows

NOW = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """A time as the API writes it: UTC, milliseconds, Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def a_device(**overrides: Any) -> dict[str, Any]:
    device: dict[str, Any] = {
        "device_id": "kitchen",
        "connected": True,
        "mode": 2,
        "desired_mode": None,
        "status": "playing",
        "playing": {"sound": "builtin-2", "mode": 2, "since": iso(NOW - timedelta(seconds=5))},
        "leds": ["#00ff00", "#0050ff", "#000000", "#000000", "#ff6000", "#000001"],
        "last_seen": iso(NOW - timedelta(seconds=12)),
        "connected_since": iso(NOW - timedelta(minutes=3)),
        "peer": "ipv4:127.0.0.1:40604",
        "tags": ["floor-1", "lobby"],
    }
    device.update(overrides)
    return device


def feed_all(parser: SseParser, text: str) -> list[SseEvent]:
    return list(cli.parse_sse(text.splitlines(keepends=True), parser))


# --- server-sent events -------------------------------------------------------------------------


def test_sse_event_has_its_type_data_and_id() -> None:
    events = feed_all(SseParser(), 'id: 7\nevent: device\ndata: {"device_id": "a"}\n\n')
    assert events == [SseEvent(event="device", data='{"device_id": "a"}', id="7")]


def test_sse_data_lines_join_with_newlines() -> None:
    events = feed_all(SseParser(), "data: one\ndata: two\n\n")
    assert events[0].data == "one\ntwo"


def test_sse_event_type_defaults_to_message() -> None:
    assert feed_all(SseParser(), "data: x\n\n")[0].event == "message"


def test_sse_comment_lines_are_not_events() -> None:
    assert feed_all(SseParser(), ": keep-alive\n\n: keep-alive\n\n") == []


def test_sse_block_without_data_is_not_dispatched_but_its_id_is_kept() -> None:
    parser = SseParser()
    assert feed_all(parser, "id: 9\nevent: device\n\n") == []
    assert parser.last_id == "9"


def test_sse_id_carries_over_to_later_events_without_one() -> None:
    events = feed_all(SseParser(), "id: 3\ndata: a\n\ndata: b\n\n")
    assert [event.id for event in events] == ["3", "3"]


def test_sse_type_does_not_carry_over_to_the_next_event() -> None:
    events = feed_all(SseParser(), "event: sounds\ndata: a\n\ndata: b\n\n")
    assert [event.event for event in events] == ["sounds", "message"]


def test_sse_only_one_space_after_the_colon_is_dropped() -> None:
    assert feed_all(SseParser(), "data:  two spaces\n\n")[0].data == " two spaces"


def test_sse_field_without_a_space_after_the_colon() -> None:
    assert feed_all(SseParser(), "data:x\n\n")[0].data == "x"


def test_sse_crlf_line_ends() -> None:
    events = feed_all(SseParser(), "id: 1\r\nevent: reset\r\ndata: {}\r\n\r\n")
    assert events == [SseEvent(event="reset", data="{}", id="1")]


def test_sse_id_containing_nul_is_ignored() -> None:
    parser = SseParser()
    feed_all(parser, "id: 4\n\nid: 5\0\ndata: x\n\n")
    assert parser.last_id == "4"


def test_sse_retry_is_remembered_in_milliseconds() -> None:
    parser = SseParser()
    feed_all(parser, "retry: 2500\n\n")
    assert parser.retry_ms == 2500


def test_sse_non_numeric_retry_is_ignored() -> None:
    parser = SseParser()
    feed_all(parser, "retry: soon\n\n")
    assert parser.retry_ms is None


def test_sse_reset_drops_the_half_received_event_of_a_lost_connection() -> None:
    parser = SseParser()
    feed_all(parser, "event: device\ndata: partial\n")
    parser.reset()
    assert feed_all(parser, "data: whole\n\n") == [SseEvent(event="message", data="whole", id=None)]


def test_sse_unknown_fields_are_ignored() -> None:
    assert feed_all(SseParser(), "colour: red\ndata: x\n\n")[0].data == "x"


# --- times ---------------------------------------------------------------------------------------


def test_relative_time_in_seconds() -> None:
    assert cli.relative_time(iso(NOW - timedelta(seconds=12)), NOW) == "12s ago"


def test_relative_time_in_minutes() -> None:
    assert cli.relative_time(iso(NOW - timedelta(minutes=5, seconds=59)), NOW) == "5m ago"


def test_relative_time_in_hours() -> None:
    assert cli.relative_time(iso(NOW - timedelta(hours=23, minutes=59)), NOW) == "23h ago"


def test_relative_time_older_than_a_day_is_an_iso_time() -> None:
    assert cli.relative_time(iso(NOW - timedelta(days=2)), NOW) == "2026-11-30T07:00:00+00:00"


def test_relative_time_slightly_ahead_clock_reads_as_now() -> None:
    assert cli.relative_time(iso(NOW + timedelta(milliseconds=500)), NOW) == "0s ago"


def test_relative_time_in_the_future() -> None:
    assert cli.relative_time(iso(NOW + timedelta(seconds=30)), NOW) == "in 30s"


def test_relative_time_of_nothing_is_never() -> None:
    assert cli.relative_time(None, NOW) == "never"


def test_unparsable_time_is_shown_as_given() -> None:
    assert cli.relative_time("yesterday", NOW) == "yesterday"


def test_parse_time_reads_z_as_utc() -> None:
    assert cli.parse_time("2026-12-02T07:00:00.123Z") == datetime(2026, 12, 2, 7, 0, 0, 123000, tzinfo=UTC)


# --- tables --------------------------------------------------------------------------------------


def test_table_columns_are_aligned_to_the_widest_cell() -> None:
    text = cli.render_table(("A", "BB"), [["long", "x"], ["s", "yy"]])
    assert text.splitlines() == ["A     BB", "long  x", "s     yy"]


def test_table_lines_have_no_trailing_blanks() -> None:
    text = cli.render_table(("A", "B"), [["x", ""]])
    assert all(line == line.rstrip() for line in text.splitlines())


def test_device_table_has_the_seven_columns() -> None:
    header = cli.format_device_list([a_device()], 1, NOW).splitlines()[0]
    assert header.split() == ["DEVICE", "CONNECTED", "MODE", "STATUS", "PLAYING", "LAST", "SEEN", "TAGS"]


def test_device_table_row_shows_the_device() -> None:
    row = cli.format_device_list([a_device()], 1, NOW).splitlines()[1]
    assert row.split() == ["kitchen", "yes", "2", "playing", "builtin-2", "12s", "ago", "floor-1,lobby"]


def test_device_table_columns_line_up_across_rows() -> None:
    devices = [a_device(), a_device(device_id="a-much-longer-device-id", connected=False, playing=None)]
    lines = cli.format_device_list(devices, 2, NOW).splitlines()
    starts = {line.index("yes") if "yes" in line else line.index("no ") for line in lines[1:3]}
    assert starts == {lines[0].index("CONNECTED")}


def test_offline_device_row_shows_no_and_dash_for_nothing_playing() -> None:
    device = a_device(connected=False, status="offline", playing=None, tags=[], last_seen=None)
    assert cli.device_row(device, NOW) == ["kitchen", "no", "2", "offline", "-", "never", "-"]


def test_device_table_shows_the_mode_waiting_for_reconnect() -> None:
    assert cli.device_row(a_device(connected=False, desired_mode=4), NOW)[2] == "2 (->4)"


def test_device_table_says_when_more_pages_exist() -> None:
    assert (
        cli.format_device_list([a_device()], 250, NOW).splitlines()[-1]
        == "1 of 250 devices (--all for every one)"
    )


def test_device_table_counts_a_complete_list() -> None:
    assert cli.format_device_list([a_device(), a_device()], 2, NOW).splitlines()[-1] == "2 devices"


def test_empty_device_list_says_so() -> None:
    assert cli.format_device_list([], 0, NOW) == "no devices match"


def test_show_lists_the_six_led_colours() -> None:
    text = cli.format_device(a_device(), NOW)
    leds = [line.split() for line in text.splitlines() if line.startswith("led_")]
    assert leds == [
        ["led_0", "#00ff00"],
        ["led_1", "#0050ff"],
        ["led_2", "#000000"],
        ["led_3", "#000000"],
        ["led_4", "#ff6000"],
        ["led_5", "#000001"],
    ]


def test_show_gives_the_last_seen_time_relative_and_exact() -> None:
    lines = cli.format_device(a_device(), NOW).splitlines()
    assert "last seen        12s ago (2026-12-02T06:59:48.000Z)" in lines


def test_show_describes_what_plays() -> None:
    lines = cli.format_device(a_device(), NOW).splitlines()
    assert "playing          builtin-2 (mode 2, since 5s ago)" in lines


def test_show_of_an_offline_device_has_dashes_for_connection_fields() -> None:
    device = a_device(connected=False, connected_since=None, peer=None, playing=None)
    pairs = dict(line.split(None, 1) for line in cli.format_device(device, NOW).splitlines() if " " in line)
    assert (pairs["peer"], pairs["playing"]) == ("-", "-")


def test_announce_prints_counts_then_each_device() -> None:
    reply = {
        "announcement": 7,
        "sound": "doorbell",
        "results": {"b": "offline", "a": "started"},
        "counts": {"refused": 0, "busy": 0, "offline": 1, "started": 1},
    }
    assert cli.format_announce(reply).splitlines() == [
        "announcement 7: doorbell",
        "started 1  offline 1  busy 0  refused 0",
        "DEVICE  RESULT",
        "a       started",
        "b       offline",
    ]


def test_sounds_table_then_the_modes() -> None:
    reply = {
        "sounds": [
            {"name": "builtin-0", "source": "built-in", "duration": 2.0, "modes": [0]},
            {"name": "doorbell", "source": "uploaded", "duration": 1.25, "modes": []},
        ],
        "modes": [{"mode": 0, "sound": "builtin-0"}],
    }
    assert cli.format_sounds(reply).splitlines() == [
        "SOUND      SOURCE    DURATION  MODES",
        "builtin-0  built-in  2.0s      0",
        "doorbell   uploaded  1.2s      -",
        "",
        "MODE  SOUND",
        "0     builtin-0",
    ]


def test_audit_rows_and_the_way_to_older_entries() -> None:
    reply = {
        "entries": [
            {
                "id": 12,
                "at": iso(NOW - timedelta(seconds=3)),
                "who": "alice",
                "role": "operator",
                "action": "announce",
                "target": {"tag": "lobby"},
                "devices": ["a", "b", "c", "d", "e"],
                "result": {"started": 5},
            }
        ],
        "next": 11,
    }
    lines = cli.format_audit(reply, NOW).splitlines()
    assert lines[1].split() == [
        "12",
        "3s",
        "ago",
        "alice",
        "operator",
        "announce",
        "tag=lobby",
        "a,b,c",
        "+2",
        "started=5",
    ]
    assert lines[-1] == "older entries: --before 11"


def test_an_object_inside_a_cell_stays_one_bracketed_item() -> None:
    assert (
        cli.cell({"sound": "bell", "counts": {"started": 2, "busy": 0}})
        == "sound=bell counts=(started=2,busy=0)"
    )


def test_empty_audit_says_so() -> None:
    assert cli.format_audit({"entries": [], "next": None}, NOW) == "no audit entries"


# --- events as lines -----------------------------------------------------------------------------


def stamp(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def test_device_event_line_has_time_type_device_and_leds() -> None:
    event = SseEvent(event="device", data=json.dumps(a_device()), id="3")
    assert cli.format_event(event, NOW) == (
        f"{stamp(NOW)} device kitchen online mode 2 playing playing builtin-2 "
        "leds #00ff00 #0050ff #000000 #000000 #ff6000 #000001 tags floor-1,lobby"
    )


def test_offline_device_event_says_offline() -> None:
    data = a_device(connected=False, status="offline", playing=None, tags=[])
    line = cli.format_event(SseEvent(event="device", data=json.dumps(data), id="3"), NOW)
    assert line.split()[3:7] == ["offline", "mode", "2", "offline"]


def test_announcement_event_line_has_no_device() -> None:
    data = {
        "announcement": 7,
        "sound": "doorbell",
        "counts": {"started": 2, "offline": 0, "busy": 1, "refused": 0},
    }
    line = cli.format_event(SseEvent(event="announcement", data=json.dumps(data), id="4"), NOW)
    assert line == f"{stamp(NOW)} announcement - #7 doorbell started 2  offline 0  busy 1  refused 0"


def test_sounds_event_line_counts_sounds_and_lists_modes() -> None:
    data = {
        "sounds": [{"name": "a"}, {"name": "b"}],
        "modes": [{"mode": 0, "sound": "a"}, {"mode": 1, "sound": "b"}],
    }
    line = cli.format_event(SseEvent(event="sounds", data=json.dumps(data), id="5"), NOW)
    assert line == f"{stamp(NOW)} sounds - 2 sounds; modes 0=a 1=b"


def test_reset_event_line_says_to_list_again() -> None:
    line = cli.format_event(SseEvent(event="reset", data="{}", id="6"), NOW)
    assert line == f"{stamp(NOW)} reset - events were missed; run 'list' again for the current state"


def test_unknown_event_line_shows_its_data() -> None:
    line = cli.format_event(SseEvent(event="future", data="not json", id=None), NOW)
    assert line == f"{stamp(NOW)} future - not json"


def test_event_json_line_has_numeric_id_type_and_parsed_data() -> None:
    line = cli.event_json(SseEvent(event="device", data='{"device_id": "a"}', id="12"))
    assert json.loads(line) == {"id": 12, "event": "device", "data": {"device_id": "a"}}


# --- errors, tokens, uploads ---------------------------------------------------------------------


def test_error_message_carries_the_detail() -> None:
    assert cli.error_message(404, b'{"detail": "no device kitchen"}', False) == "HTTP 404: no device kitchen"


def test_error_message_names_each_bad_field_of_a_422() -> None:
    body = json.dumps({"detail": "invalid", "errors": [{"field": "body.mode", "message": "out of range"}]})
    assert cli.error_message(422, body.encode(), False) == "HTTP 422: invalid (body.mode: out of range)"


def test_error_message_for_401_without_a_token_says_to_pass_one() -> None:
    message = cli.error_message(401, b'{"detail": "token required"}', False)
    assert (
        message
        == "HTTP 401: token required; the server needs a token: pass --token-file FILE or set $ACP_ADMIN_TOKEN"
    )


def test_error_message_for_401_with_a_token_says_it_was_refused() -> None:
    message = cli.error_message(401, b'{"detail": "bad token"}', True)
    assert "the token was refused" in message
    assert "--token-file" in message


def test_error_message_of_a_non_json_body_shows_the_text() -> None:
    assert cli.error_message(502, b"<html>Bad Gateway</html>", False) == "HTTP 502: <html>Bad Gateway</html>"


def test_error_message_of_an_empty_body_uses_the_reason_phrase() -> None:
    assert cli.error_message(503, b"", False) == "HTTP 503: Service Unavailable"


def test_token_file_first_line_is_the_token() -> None:
    assert cli.read_token("\n  s3cret  \nother\n") == "s3cret"


def test_token_file_line_may_name_the_token_as_the_server_file_does() -> None:
    assert cli.read_token("alice:s3cret\n") == "s3cret"


def test_empty_token_file_is_an_error() -> None:
    with pytest.raises(cli.CliError, match="no token"):
        cli.read_token("\n \n")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("bell.mp3", "audio/mpeg"),
        ("bell.wav", "audio/x-wav"),
        ("bell.unknownext", "application/octet-stream"),
        ("bell", "application/octet-stream"),
        ("bell.wav.gz", "application/octet-stream"),
        ("bell.txt", "application/octet-stream"),
    ],
)
def test_upload_content_type_is_guessed_from_the_extension(path: str, content_type: str) -> None:
    assert cli.upload_type(path) == content_type


# --- arguments -----------------------------------------------------------------------------------


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(argv) == 2
    return capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "required" in usage_error([], capsys)


def test_connected_and_offline_together_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "not allowed with" in usage_error(["list", "--connected", "--offline"], capsys)


def test_limit_and_all_together_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "not allowed with" in usage_error(["list", "--limit", "5", "--all"], capsys)


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_limit_outside_1_to_1000_is_a_usage_error(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--limit" in usage_error(["list", "--limit", limit], capsys)


def test_announce_without_a_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "one of the arguments --devices --tag --all is required" in usage_error(
        ["announce", "bell"], capsys
    )


def test_announce_with_two_targets_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "not allowed with" in usage_error(["announce", "bell", "--tag", "x", "--all"], capsys)


def test_announce_devices_that_name_nothing_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "names no device" in usage_error(["announce", "bell", "--devices", " , "], capsys)


def test_announce_devices_split_on_commas() -> None:
    args = cli.parse_args(["announce", "bell", "--devices", "a, b,,c"])
    assert args.devices == ["a", "b", "c"]


def test_play_with_mode_and_sound_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "not allowed with" in usage_error(["play", "kitchen", "--mode", "1", "--sound", "bell"], capsys)


def test_mode_must_be_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    assert "invalid" in usage_error(["mode", "kitchen", "three"], capsys)


def test_tags_without_tags_or_clear_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--clear" in usage_error(["tags", "kitchen"], capsys)


def test_tags_and_clear_together_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--clear" in usage_error(["tags", "kitchen", "a", "--clear"], capsys)


def test_sounds_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert "required" in usage_error(["sounds"], capsys)


def test_url_must_be_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--url must start with http://" in usage_error(["--url", "ftp://x", "list"], capsys)


def test_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--timeout" in usage_error(["--timeout", "0", "list"], capsys)


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "acp-admin" in capsys.readouterr().out


def test_url_defaults_to_loopback_8080(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.URL_ENV, raising=False)
    assert cli.parse_args(["list"]).url == "http://127.0.0.1:8080"


def test_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.URL_ENV, "http://acp.example:9000/")
    assert cli.parse_args(["list"]).url == "http://acp.example:9000"


def test_url_option_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.URL_ENV, "http://acp.example:9000")
    assert cli.parse_args(["--url", "http://127.0.0.1:1", "list"]).url == "http://127.0.0.1:1"


def test_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.TOKEN_ENV, "from-env")
    assert cli.resolve_token(None) == "from-env"


def test_token_file_beats_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cli.TOKEN_ENV, "from-env")
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert cli.resolve_token(str(token_file)) == "from-file"


def test_no_token_anywhere_sends_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    assert cli.resolve_token(None) is None


# --- failures that need no server ----------------------------------------------------------------


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_unreachable_server_exits_1_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    assert cli.main(["--url", url, "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the server at {url}: ")


def test_unreadable_token_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    assert cli.main(["--token-file", str(missing), "list"]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot read the token file {missing}")


def test_tail_that_cannot_connect_the_first_time_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    assert cli.main(["--url", url, "tail"]) == 1
    assert "cannot reach the server at" in capsys.readouterr().err


# --- against the real server: in-process, simulated devices over real gRPC -----------------------
#
# The server runs on the scenario's event loop; the CLI's main() runs in a worker thread (it
# blocks, as it does for an operator), or as its own process for tail, which ends by Ctrl-C.

REPO = Path(__file__).resolve().parents[1]
OPERATOR_TOKEN = "operator-secret-0123456789"
READONLY_TOKEN = "readonly-secret-0123456789"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}  # the test's own view of the server


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def acp(op: Operated, capsys: pytest.CaptureFixture[str], *argv: str, url: str | None = None) -> Ran:
    """acp-admin run against the live server, off the loop so the server keeps serving."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["--url", url or op.url, *argv])
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


async def connected(op: Operated, device_id: str) -> dict[str, Any]:
    """Until the API shows the device connected with the LEDs of its mode confirmed."""
    return await op.until_device(
        device_id, lambda d: d["connected"] and d["leds"][1:] == [hex_colour(c) for c in idle_in(d["mode"])]
    )


def idle_in(mode: int) -> tuple[int, int, int, int, int]:
    return (STATUS_IDLE.rgba, *mode_leds(mode))


def token_files(tmp_path: Path) -> dict[str, Any]:
    operator, readonly = tmp_path / "operator.tokens", tmp_path / "readonly.tokens"
    operator.write_text(f"alice:{OPERATOR_TOKEN}\n")
    readonly.write_text(f"{READONLY_TOKEN}\n")
    return {"admin_token_file": operator, "admin_readonly_token_file": readonly}


def token_file(tmp_path: Path, token: str) -> str:
    path = tmp_path / "my.token"
    path.write_text(token + "\n")
    return str(path)


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's own $ACP_ADMIN_TOKEN must not leak into the tests."""
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)


def test_list_shows_a_connected_simulated_device(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            ran = await acp(op, capsys, "list")
            assert ran.code == 0, ran.err
            lines = ran.out.splitlines()
            assert lines[0].split()[:3] == ["DEVICE", "CONNECTED", "MODE"]
            assert lines[1].split()[:4] == ["kitchen", "yes", "0", "idle"]
            assert lines[-1] == "1 device"

    run(scenario)


def test_list_json_prints_the_servers_reply(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            ran = await acp(op, capsys, "--json", "list")
            reply = json.loads(ran.out)
            assert [d["device_id"] for d in reply["devices"]] == ["kitchen"]
            assert reply["total"] == 1

    run(scenario)


def test_list_offline_shows_only_disconnected_devices(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            async with op.device("hall"):
                await connected(op, "hall")
            await op.until_device("hall", lambda d: not d["connected"])
            await connected(op, "kitchen")
            ran = await acp(op, capsys, "list", "--offline")
            assert [line.split()[0] for line in ran.out.splitlines()[1:-1]] == ["hall"]

    run(scenario)


async def tagged_pair(op: Operated, capsys: pytest.CaptureFixture[str]) -> None:
    """hall (tag lobby, mode 0) and office (no tag, mode 2), both connected."""
    await connected(op, "hall")
    await connected(op, "office")
    await acp(op, capsys, "tags", "hall", "lobby")
    await acp(op, capsys, "mode", "office", "2")


def listed(ran: Ran) -> list[str]:
    return [line.split()[0] for line in ran.out.splitlines()[1:-1]]


def test_list_tag_shows_only_devices_with_that_tag(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("hall"), op.device("office"):
            await tagged_pair(op, capsys)
            assert listed(await acp(op, capsys, "list", "--tag", "lobby")) == ["hall"]

    run(scenario)


def test_list_mode_shows_only_devices_in_that_mode(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("hall"), op.device("office"):
            await tagged_pair(op, capsys)
            assert listed(await acp(op, capsys, "list", "--mode", "2")) == ["office"]

    run(scenario)


def test_list_search_matches_part_of_an_id_or_tag(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("hall"), op.device("office"):
            await tagged_pair(op, capsys)
            assert listed(await acp(op, capsys, "list", "--search", "offi")) == ["office"]
            assert listed(await acp(op, capsys, "list", "--search", "lob")) == ["hall"]

    run(scenario)


def test_list_limit_shows_one_page_and_says_how_many_there_are(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("hall"), op.device("office"):
            await tagged_pair(op, capsys)
            ran = await acp(op, capsys, "list", "--limit", "1")
            assert listed(ran) == ["hall"]
            assert ran.out.splitlines()[-1] == "1 of 2 devices (--all for every one)"

    run(scenario)


def test_every_page_is_fetched_for_all(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            devices = [op.device(f"dev-{n}") for n in range(5)]
            for dev in devices:
                await dev.connect()
            for dev in devices:
                await connected(op, dev.device_id)
            client = cli.Client(op.url, None, 10)
            reply = await asyncio.to_thread(cli.fetch_all_devices, client, {}, 2)
            assert [d["device_id"] for d in reply["devices"]] == [f"dev-{n}" for n in range(5)]
            assert reply["total"] == 5
            assert reply["next"] is None
            for dev in devices:
                await dev.disconnect()

    run(scenario)


def test_show_lists_the_leds_the_device_confirmed(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            device = await connected(op, "kitchen")
            ran = await acp(op, capsys, "show", "kitchen")
            assert ran.code == 0, ran.err
            leds = [line.split()[1] for line in ran.out.splitlines() if line.startswith("led_")]
            assert leds == device["leds"]
            assert len(leds) == 6

    run(scenario)


def test_mode_changes_the_devices_leds(library: SoundLibrary, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            ran = await acp(op, capsys, "mode", "kitchen", "3")
            assert (ran.code, ran.out) == (0, "kitchen: mode 3 applied\n")
            await kitchen.wait_for_leds(shows(idle_in(3)), 5)

    run(scenario)


def test_mode_of_an_offline_device_says_it_waits_for_reconnect(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            async with op.device("kitchen"):
                await connected(op, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            ran = await acp(op, capsys, "mode", "kitchen", "2")
            assert (ran.code, ran.out) == (0, "kitchen is offline: mode 2 is applied when it reconnects\n")
            assert (await op.device_json("kitchen"))["desired_mode"] == 2

    run(scenario)


def test_mode_out_of_range_exits_1_with_the_servers_detail(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            ran = await acp(op, capsys, "mode", "kitchen", "9")
            assert ran.code == 1
            assert ran.err.startswith("error: HTTP 422: ")
            assert "mode 9" in ran.err

    run(scenario)


def test_play_streams_the_sound_to_the_device(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            ran = await acp(op, capsys, "play", "kitchen", "--sound", "builtin-2")
            assert ran.code == 0, ran.err
            assert ran.out.startswith("kitchen: started")
            recordings = await kitchen.wait_for_recordings(1, 10)
            assert holds_the_whole_sound(recordings[0], library.for_mode(2))

    run(scenario)


def test_stop_ends_what_plays(library: SoundLibrary, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            assert (await acp(op, capsys, "play", "kitchen", "--mode", "1")).code == 0
            await op.until_device("kitchen", lambda d: d["playing"] is not None)
            ran = await acp(op, capsys, "stop", "kitchen")
            assert (ran.code, ran.out) == (0, "kitchen: stopped\n")
            recordings = await kitchen.wait_for_recordings(1, 5)
            assert len(recordings[0].packets) < len(library.for_mode(1).packets)

    run(scenario)


def test_play_on_an_offline_device_exits_1(library: SoundLibrary, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            async with op.device("kitchen"):
                await connected(op, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            ran = await acp(op, capsys, "play", "kitchen")
            assert ran.code == 1
            assert ran.err.startswith("error: HTTP 409: ")

    run(scenario)


def test_show_of_a_device_never_seen_prints_the_404_detail(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            ran = await acp(op, capsys, "show", "nobody")
            assert ran.code == 1
            assert ran.err == "error: HTTP 404: device 'nobody' has never connected to this server\n"

    run(scenario)


def test_tags_replace_the_devices_tags(library: SoundLibrary, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            ran = await acp(op, capsys, "tags", "kitchen", "floor-1", "lobby")
            assert (ran.code, ran.out) == (0, "kitchen: tags floor-1, lobby\n")
            assert (await op.device_json("kitchen"))["tags"] == ["floor-1", "lobby"]

    run(scenario)


def test_tags_clear_removes_every_tag(library: SoundLibrary, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            await acp(op, capsys, "tags", "kitchen", "lobby")
            ran = await acp(op, capsys, "tags", "kitchen", "--clear")
            assert (ran.code, ran.out) == (0, "kitchen: no tags\n")
            assert (await op.device_json("kitchen"))["tags"] == []

    run(scenario)


def test_announce_prints_the_counts_and_each_devices_result(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("hall") as hall:
            await connected(op, "hall")
            ran = await acp(op, capsys, "announce", "builtin-0", "--devices", "hall,nowhere")
            assert ran.code == 0, ran.err
            lines = ran.out.splitlines()
            assert lines[0].startswith("announcement ")
            assert lines[0].endswith(": builtin-0")
            assert lines[1].startswith("started 1  offline 1  busy 0  refused 0")
            assert [line.split() for line in lines[3:]] == [["hall", "started"], ["nowhere", "offline"]]
            await hall.wait_for_recordings(1, 10)

    run(scenario)


def test_announce_to_a_tag_reaches_the_tagged_device(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("hall") as hall, op.device("office"):
            await connected(op, "hall")
            await connected(op, "office")
            await acp(op, capsys, "tags", "hall", "floor-1")
            ran = await acp(op, capsys, "--json", "announce", "builtin-0", "--tag", "floor-1")
            assert json.loads(ran.out)["results"] == {"hall": "started"}
            await hall.wait_for_recordings(1, 10)

    run(scenario)


def test_an_uploaded_sound_assigned_to_a_mode_is_what_play_plays(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bell = write_tone(tmp_path / "bell.wav", freq=660, seconds=0.4)

    async def scenario() -> None:
        state_db = str(tmp_path / "state" / "devices.sqlite3")
        async with operated(library, state_db=state_db) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            uploaded = await acp(op, capsys, "sounds", "upload", "bell", str(bell))
            assert (uploaded.code, uploaded.out.split(":")[0]) == (0, "bell"), uploaded.err
            assert "uploaded" in uploaded.out
            assigned = await acp(op, capsys, "sounds", "assign", "0", "bell")
            assert (assigned.code, assigned.out) == (0, "mode 0: bell\n"), assigned.err
            assert (await acp(op, capsys, "play", "kitchen")).code == 0
            recordings = await kitchen.wait_for_recordings(1, 10)
            assert abs(recordings[0].duration - 0.4) <= 0.04

    run(scenario)


def test_sounds_list_shows_an_upload_and_its_mode(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bell = write_tone(tmp_path / "bell.wav", seconds=0.4)

    async def scenario() -> None:
        async with operated(library, state_db=str(tmp_path / "state" / "devices.sqlite3")) as op:
            await acp(op, capsys, "sounds", "upload", "bell", str(bell))
            await acp(op, capsys, "sounds", "assign", "3", "bell")
            ran = await acp(op, capsys, "sounds", "list")
            rows = {
                line.split()[0]: line.split()[1:] for line in ran.out.splitlines() if line.startswith("bell")
            }
            assert rows == {"bell": ["uploaded", "0.4s", "3"]}
            assert ["3", "bell"] in [line.split() for line in ran.out.splitlines()]

    run(scenario)


def test_uploading_the_same_name_again_replaces_it(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bell = write_tone(tmp_path / "bell.wav", seconds=0.4)

    async def scenario() -> None:
        async with operated(library, state_db=str(tmp_path / "state" / "devices.sqlite3")) as op:
            await acp(op, capsys, "sounds", "upload", "bell", str(bell))
            ran = await acp(op, capsys, "sounds", "upload", "bell", str(bell))
            assert ran.out.startswith("bell: replaced")

    run(scenario)


def test_an_upload_that_does_not_decode_exits_1_saying_why(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio" * 100)

    async def scenario() -> None:
        async with operated(library, state_db=str(tmp_path / "state" / "devices.sqlite3")) as op:
            ran = await acp(op, capsys, "sounds", "upload", "junk", str(junk))
            assert ran.code == 1
            assert ran.err.startswith("error: HTTP 422: body: ")

    run(scenario)


def test_sounds_delete_removes_an_upload(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bell = write_tone(tmp_path / "bell.wav", seconds=0.4)

    async def scenario() -> None:
        async with operated(library, state_db=str(tmp_path / "state" / "devices.sqlite3")) as op:
            await acp(op, capsys, "sounds", "upload", "bell", str(bell))
            ran = await acp(op, capsys, "sounds", "delete", "bell")
            assert (ran.code, ran.out) == (0, "bell: deleted\n"), ran.err
            again = await acp(op, capsys, "sounds", "delete", "bell")
            assert (again.code, again.err) == (1, "error: HTTP 404: no sound is named 'bell'\n")

    run(scenario)


def test_audit_shows_the_clis_actions_newest_first(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            await acp(op, capsys, "mode", "kitchen", "2")
            await acp(op, capsys, "stop", "kitchen")
            ran = await acp(op, capsys, "audit", "--limit", "5")
            rows = [line.split() for line in ran.out.splitlines()[1:]]
            assert [(row[3], row[4], row[5], row[-1]) for row in rows] == [
                ("local", "operator", "stop", "result=idle"),
                ("local", "operator", "mode", "result=applied"),
            ]

    run(scenario)


def test_a_wrong_token_exits_1_saying_to_pass_the_token_file(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with operated(library, **token_files(tmp_path)) as op:
            ran = await acp(
                op, capsys, "--token-file", token_file(tmp_path, "wrong-token-0123456789"), "list"
            )
            assert ran.code == 1
            assert ran.err.startswith("error: HTTP 401: ")
            assert "--token-file" in ran.err

    run(scenario)


def test_no_token_where_one_is_needed_exits_1_saying_to_pass_one(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with operated(library, **token_files(tmp_path)) as op:
            ran = await acp(op, capsys, "list")
            assert ran.code == 1
            assert ran.err.startswith("error: HTTP 401: ")
            assert "the server needs a token: pass --token-file FILE" in ran.err

    run(scenario)


def test_the_servers_own_token_file_works_as_the_token_file(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def scenario() -> None:
        files = token_files(tmp_path)
        async with operated(library, headers=OPERATOR, **files) as op, op.device("kitchen"):
            await op.until_device("kitchen", lambda d: d["connected"])
            ran = await acp(
                op, capsys, "--token-file", str(files["admin_token_file"]), "mode", "kitchen", "1"
            )
            assert (ran.code, ran.out) == (0, "kitchen: mode 1 applied\n"), ran.err
            audit = await acp(op, capsys, "--token-file", str(files["admin_token_file"]), "--json", "audit")
            assert json.loads(audit.out)["entries"][0]["who"] == "alice"

    run(scenario)


def test_whoami_names_the_tokens_owner_and_role(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with operated(library, **token_files(tmp_path)) as op:
            ran = await acp(
                op, capsys, "--token-file", token_file(tmp_path, f"alice:{OPERATOR_TOKEN}"), "whoami"
            )
            assert (ran.code, ran.out) == (0, "alice (operator)\n"), ran.err

    run(scenario)


def test_the_token_from_the_environment_is_sent(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.TOKEN_ENV, OPERATOR_TOKEN)

    async def scenario() -> None:
        async with operated(library, **token_files(tmp_path)) as op:
            ran = await acp(op, capsys, "list")
            assert (ran.code, ran.out) == (0, "no devices match\n"), ran.err

    run(scenario)


def test_a_readonly_token_may_list_but_an_action_exits_1_with_403(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with operated(library, headers=OPERATOR, **token_files(tmp_path)) as op, op.device("kitchen"):
            await op.until_device("kitchen", lambda d: d["connected"])
            readonly = token_file(tmp_path, READONLY_TOKEN)
            assert (await acp(op, capsys, "--token-file", readonly, "list")).code == 0
            ran = await acp(op, capsys, "--token-file", readonly, "mode", "kitchen", "1")
            assert ran.code == 1
            assert ran.err.startswith("error: HTTP 403: ")

    run(scenario)


# --- tail: its own process, as an operator runs it, ended by Ctrl-C --------------------------------


class Tail:
    """``acp-admin tail`` in a child process, its output read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    @classmethod
    async def start(cls, url: str, *argv: str) -> Tail:
        env = {key: value for key, value in os.environ.items() if key != cli.TOKEN_ENV}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "admin.cli",
            "--url",
            url,
            *argv,
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def line_where(self, condition: Callable[[str], bool], timeout: float = 15) -> str:
        """The next line that satisfies ``condition`` (each line read is kept in ``lines``)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"tail ended after {self.lines}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if condition(line):
                    return line

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, as an operator ends it: its exit status and what it wrote on stderr."""
        self.process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(self.process.communicate(), 10)
        assert self.process.returncode is not None
        return self.process.returncode, err.decode()

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.communicate()


@asynccontextmanager
async def tailing(url: str, *argv: str) -> AsyncIterator[Tail]:
    tail = await Tail.start(url, *argv)
    try:
        yield tail
    finally:
        await tail.close()


async def until_readers(op: Operated, count: int, timeout: float = 10) -> None:
    """Until the server holds ``count`` event-stream readers: tail has subscribed."""
    hub = op.plane.events
    assert hub is not None
    async with asyncio.timeout(timeout):
        while hub.readers != count:
            await asyncio.sleep(0.01)


def test_tail_prints_a_device_event_as_it_happens(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            async with tailing(op.url, "tail") as tail:
                await until_readers(op, 1)
                assert await kitchen.press(Button.MODE)
                line = await tail.line_where(lambda line: " mode 1 " in line)
                assert line.split()[1:6] == ["device", "kitchen", "online", "mode", "1"]

    run(scenario)


def test_tail_json_prints_one_json_object_per_event(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            async with tailing(op.url, "--json", "tail") as tail:
                await until_readers(op, 1)
                assert await kitchen.press(Button.MODE)
                line = await tail.line_where(lambda line: json.loads(line)["data"].get("mode") == 1)
                event = json.loads(line)
                assert (event["event"], event["data"]["device_id"]) == ("device", "kitchen")
                assert isinstance(event["id"], int)

    run(scenario)


def test_tail_from_last_event_id_replays_what_came_after_it(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            async with op.device("kitchen"):
                await connected(op, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            async with tailing(op.url, "tail", "--last-event-id", "0") as tail:
                await tail.line_where(lambda line: "device kitchen offline" in line)

    run(scenario)


def test_tail_exits_0_on_ctrl_c(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, tailing(op.url, "tail") as tail:
            await until_readers(op, 1)
            code, err = await tail.interrupt()
            assert (code, err) == (0, "")

    run(scenario)


def test_tail_exits_0_when_the_reader_of_its_output_goes_away(library: SoundLibrary) -> None:
    """``acp-admin tail | head -1``: once head has gone, the next event ends tail quietly."""

    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            read_end, write_end = os.pipe()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "admin.cli",
                "--url",
                op.url,
                "tail",
                cwd=REPO,
                stdout=write_end,
                stderr=asyncio.subprocess.PIPE,
            )
            os.close(write_end)
            try:
                await until_readers(op, 1)
                assert await kitchen.press(Button.MODE)
                first = await asyncio.to_thread(os.read, read_end, 65536)
                assert b" device kitchen " in first
                os.close(read_end)
                read_end = -1
                assert await kitchen.press(Button.MODE)
                _, err = await asyncio.wait_for(process.communicate(), 10)
                assert (process.returncode, err.decode()) == (0, "")
            finally:
                if read_end >= 0:
                    os.close(read_end)
                if process.returncode is None:
                    process.kill()
                    await process.communicate()

    run(scenario)


def test_tail_reconnects_after_the_server_restarts(library: SoundLibrary) -> None:
    port = unused_port()

    async def scenario() -> None:
        tail: Tail | None = None
        try:
            async with operated(library, admin_port=port) as op:
                tail = await Tail.start(op.url, "tail")
                await until_readers(op, 1)
                async with op.device("kitchen"):
                    await tail.line_where(lambda line: "device kitchen online" in line)
            async with operated(library, admin_port=port) as op:
                await until_readers(op, 1, timeout=30)
                async with op.device("pantry"):
                    await tail.line_where(lambda line: "device pantry online" in line)
            code, err = await tail.interrupt()
            assert code == 0
            assert "reconnecting after event" in err
        finally:
            if tail is not None:
                await tail.close()

    run(scenario)


# --- forget -------------------------------------------------------------------------------------


def test_forget_removes_an_offline_device(library: SoundLibrary, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            async with op.device("kitchen"):
                await connected(op, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            ran = await acp(op, capsys, "forget", "kitchen")
            assert ran.code == 0, ran.err
            assert ran.out.startswith("kitchen: forgotten")
            assert (await op.http.get("/api/devices/kitchen")).status_code == 404

    run(scenario)


def test_forget_of_a_connected_device_exits_1_with_the_409(
    library: SoundLibrary, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            ran = await acp(op, capsys, "forget", "kitchen")
            assert ran.code == 1
            assert ran.err.startswith("error: HTTP 409: ")
            assert "connected" in ran.err

    run(scenario)


# --- redirects: the token never goes to another origin -------------------------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 302 to ``redirect_to`` when set, else 200 with a whoami reply; keeps each request's headers."""

    redirect_to: str | None = None
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers.items()))
        if self.redirect_to is not None and self.path == "/api/whoami":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"who": "alice", "role": "operator"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what was seen, not a log."""


@contextmanager
def http_server(
    redirect_to: Callable[[int], str] | None = None,
) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A real HTTP server on a free loopback port; ``redirect_to`` gets its own port."""
    seen: list[dict[str, str]] = []

    class Handler(Recorder):
        pass

    Handler.seen = seen
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = int(server.server_address[1])
    Handler.redirect_to = None if redirect_to is None else redirect_to(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_redirect_to_another_host_is_refused_and_the_token_is_not_sent_there(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with http_server() as (elsewhere, seen_elsewhere):
        with http_server(lambda _: f"{elsewhere}/api/whoami") as (server, seen_here):
            code = cli.main(["--url", server, "--token-file", token_file(tmp_path, OPERATOR_TOKEN), "whoami"])
        err = capsys.readouterr().err
        assert code == 1
        assert f"redirected (302) to {elsewhere}" in err
        assert "not followed" in err
        assert [headers.get("Authorization") for headers in seen_here] == [f"Bearer {OPERATOR_TOKEN}"]
        assert seen_elsewhere == []


def test_a_redirect_to_another_scheme_of_the_same_host_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with http_server(lambda port: f"https://127.0.0.1:{port}/api/whoami") as (server, seen):
        code = cli.main(["--url", server, "--token-file", token_file(tmp_path, OPERATOR_TOKEN), "whoami"])
    assert code == 1
    assert "another origin" in capsys.readouterr().err
    assert len(seen) == 1


def test_a_redirect_within_the_same_origin_is_followed_with_the_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with http_server(lambda port: f"http://127.0.0.1:{port}/api/whoami/") as (server, seen):
        code = cli.main(["--url", server, "--token-file", token_file(tmp_path, OPERATOR_TOKEN), "whoami"])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "alice (operator)"
    assert [headers.get("Authorization") for headers in seen] == [f"Bearer {OPERATOR_TOKEN}"] * 2


def test_the_origin_of_a_url_names_its_default_port() -> None:
    assert (
        cli.origin("http://Example.org/x") == cli.origin("http://example.org:80/y") == "http://example.org:80"
    )
    assert cli.origin("https://example.org") == "https://example.org:443"
    assert cli.origin("http://[::1]:8080/") == "http://[::1]:8080"
