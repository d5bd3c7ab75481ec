"""The check that no secret reaches a log (``tests.log_secrets``) catches a leak, wherever it is."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.log_secrets import LogReader, found_in, hint, leaks, secret

REPO = Path(__file__).resolve().parent.parent

LEAKY = """
import logging
from pathlib import Path

from tests.log_secrets import secret

OPERATOR_TOKEN = "op-token-that-must-stay-private"


def test_a_constant_logged(caplog):
    logging.getLogger("admin.app").warning("request with Bearer %s", OPERATOR_TOKEN)


def test_a_registered_value_logged_at_info():
    minted = secret("minted-device-token-0123456789abcdef")
    logging.getLogger("rpc.servicer").info("metadata: device-token=%s", minted)


def test_a_token_file_line_in_an_exception(tmp_path):
    (tmp_path / "operator.tokens").write_text("alice:token-from-the-server-file\\n")
    try:
        raise ValueError("token-from-the-server-file was refused")
    except ValueError:
        logging.getLogger("admin.access").exception("refused")


def test_a_server_process_log_file(tmp_path):
    (tmp_path / "device-auth.secret").write_text("device-auth-secret-in-a-file")
    (tmp_path / "server.log").write_text("INFO loaded device-auth-secret-in-a-file\\n")


def test_a_device_token_nobody_named(tmp_path):
    from actors.logs import for_device
    from rpc.auth import token_for

    (tmp_path / "device-auth.secret").write_text("device-auth-secret-for-tokens")
    token = token_for(b"device-auth-secret-for-tokens", "kitchen")
    for_device(logging.getLogger("rpc.servicer"), "kitchen").info("metadata %s", token)


def test_nothing_leaked(tmp_path):
    (tmp_path / "server.log").write_text("INFO serving on 127.0.0.1:5000\\n")
    logging.getLogger("rpc.server").warning("a token was refused")
"""


def test_a_test_that_logs_a_secret_fails_and_the_others_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a process of its own: the leaks must not reach this test's own logs."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-p", "tests.log_secrets", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 6  # each test itself passes ...
    assert outcomes.get("errors") == 5  # ... and five fail at teardown for their leaks
    output = result.stdout.str()
    assert "ERROR at teardown of test_nothing_leaked" not in output
    for name in (
        "constant_logged",
        "registered_value",
        "token_file_line",
        "server_process_log",
        "device_token",
    ):
        assert f"ERROR test_leaky.py::test_a_{name}" in output
    assert "logger admin.app: op-t… (31 characters)" in output
    assert "logger rpc.servicer: mint… (36 characters)" in output
    assert "logger admin.access: toke… (26 characters)" in output
    assert "server.log: devi… (28 characters)" in output


def test_the_reader_finds_a_secret_in_a_message_or_a_traceback() -> None:
    value = secret("a-secret-only-this-test-knows")
    reader = LogReader()
    reader.emit(
        logging.LogRecord("x", logging.WARNING, __file__, 1, "url %s", ("redis://:" + value + "@h",), None)
    )
    assert leaks(reader, [], [value]) == [f"logger x: {hint(value)}"]


def test_a_value_too_short_to_be_a_secret_is_not_registered() -> None:
    secret("short")
    assert found_in("a short word", ["short-but-not-registered"]) == []
