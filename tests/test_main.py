"""`python -m actors.main`: flags, start-up errors, and a clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from actors.config import ServerConfig, parse_config
from actors.main import GC_THRESHOLDS, tune_garbage_collector
from tests.server_process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_setting_with_its_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "actors.main", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for flag, env in [
        ("--host", "ACP_HOST"),
        ("--port", "ACP_PORT"),
        ("--modes", "ACP_MODES"),
        ("--sounds-dir", "ACP_SOUNDS_DIR"),
        ("--frame-ms", "ACP_FRAME_MS"),
        ("--preroll-ms", "ACP_PREROLL_MS"),
        ("--grace", "ACP_GRACE"),
        ("--log-level", "ACP_LOG_LEVEL"),
    ]:
        assert flag in result.stdout
        assert env in result.stdout


def test_environment_variables_set_defaults_and_flags_win() -> None:
    config = parse_config(["--modes", "7"], {"ACP_MODES": "3", "ACP_PORT": "6000", "ACP_LOG_LEVEL": "debug"})
    assert config == ServerConfig(modes=7, port=6000, log_level="DEBUG")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--modes", "0"], "modes must be 1..24"),
        (["--modes", "25"], "modes must be 1..24"),
        (["--frame-ms", "25"], "frame duration must be one of"),
        (["--port", "70000"], "outside 0..65535"),
        (["--log-level", "LOUD"], "log level must be one of"),
        (["--max-streams", "-1"], "max streams must be >= 0"),
        (["--stream-cpu-percent", "120"], "must be 10..100 % of a core"),
        (["--learn-capacity", "maybe"], "--learn-capacity: invalid boolean value"),
        (["--connect-queue-ms", "0"], "the connect queue limit must be 1..60000 ms"),
    ],
)
def test_a_bad_setting_exits_with_a_message_that_names_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv, {})
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_environment_value_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config([], {"ACP_PORT": "fifty"})
    assert "ACP_PORT='fifty'" in capsys.readouterr().err


def run_server(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the server with a configuration that must not start, and collect what it said."""
    return subprocess.run(
        [sys.executable, "-m", "actors.main", "--metrics-port", "-1", "--state-db", ":memory:", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_up_error(*args: str) -> str:
    result = run_server("--port", "0", *args)
    assert result.returncode == 2, result.stderr
    return result.stderr


def test_a_sound_file_that_does_not_decode_stops_start_up_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "2-broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    assert "2-broken.wav" in start_up_error("--sounds-dir", str(tmp_path))


def test_a_missing_sounds_directory_stops_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert str(missing) in start_up_error("--sounds-dir", str(missing))


def test_a_state_store_that_is_not_a_database_stops_start_up_naming_it(tmp_path: Path) -> None:
    bogus = tmp_path / "devices.sqlite3"
    bogus.write_bytes(b"not a database " * 200)
    assert str(bogus) in start_up_error("--state-db", str(bogus))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_server_stops_cleanly_on_a_signal(signum: signal.Signals, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server.log", "--grace", "2")
    assert server.stop(signum) == 0
    assert "stopped" in server.output


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "server.log")
    try:
        result = run_server("--host", "127.0.0.1", "--port", str(first.port))
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{first.port}" in result.stderr
    finally:
        first.stop()


def test_the_entry_point_tunes_the_garbage_collector_for_a_streaming_heap() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # start-up objects stay out of full collections
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
