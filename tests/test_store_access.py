"""Reaching the shared store: the password kept out of logs and errors, and settings that agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cluster
from actors.config import parse_config
from cluster.redis_acl import COMMANDS, acl_file, main, user_rules
from cluster.store_access import StoreAccess, check_store_settings, on_this_machine, read_password, redacted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://acp:hunter2@redis:6379/0", "redis://acp:***@redis:6379/0"),
        ("rediss://acp:hun@ter/2@redis.example:6380/0", "rediss://acp:***@redis.example:6380/0"),
        ("redis://acp@redis:6379/0", "redis://acp@redis:6379/0"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("unix://acp@/run/redis.sock?db=0&password=hunter2", "unix://acp@/run/redis.sock?db=0&password=***"),
        ("redis://acp:hunter2@[::1", "redis://acp:***@[::1"),
        ("not a url hunter2", "not a url hunter2"),
    ],
)
def test_redacted_hides_the_password_of_any_store_url(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_a_store_access_shows_itself_redacted_and_keeps_its_password_out_of_its_repr() -> None:
    access = StoreAccess("redis://acp@redis:6379/0", "hunter2")
    assert str(access) == "redis://acp@redis:6379/0"
    assert "hunter2" not in repr(access)
    assert access.authenticates
    with pytest.raises(ValueError, match="given twice") as given_twice:
        StoreAccess("redis://acp:other@redis:6379/0", "hunter2")
    assert "other" not in str(given_twice.value)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("redis://localhost/0", True),
        ("redis://[::1]:6379/0", True),
        ("unix:///run/redis.sock", True),
        ("redis://redis:6379/0", False),
        ("rediss://10.0.0.5:6380/0", False),
    ],
)
def test_which_stores_are_on_this_machine(url: str, local: bool) -> None:
    assert on_this_machine(url) is local


def test_a_store_beyond_this_machine_needs_the_replicas_secret() -> None:
    with pytest.raises(ValueError, match="--store-secret-file") as refused:
        check_store_settings("redis://acp:hunter2@redis:6379/0", None, None, None, "")
    assert "hunter2" not in str(refused.value)
    check_store_settings("redis://acp@redis:6379/0", None, None, Path("secret"), "")
    check_store_settings("redis://127.0.0.1:6379/0", None, None, None, "")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (("http://acp:hunter2@redis/0", None, None, Path("s"), ""), "must be a redis://"),
        (("redis://127.0.0.1/0", None, Path("ca.pem"), None, ""), "needs a rediss:// URL"),
        (("redis://:hunter2@127.0.0.1/0", Path("pw"), None, None, ""), "given twice"),
        (("", Path("pw"), None, None, ""), "need a store"),
        (("redis://127.0.0.1/0", None, None, None, "two words"), "replica id"),
    ],
)
def test_store_settings_that_disagree_are_refused_without_showing_the_password(
    settings: tuple[str, Path | None, Path | None, Path | None, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        check_store_settings(*settings)
    assert "hunter2" not in str(refused.value)


def test_the_store_settings_come_from_flags_and_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = parse_config(
        ["--store", "rediss://acp@redis:6380/0", "--store-tls-ca-file", "ca.pem"],
        {"ACP_STORE_PASSWORD_FILE": "/run/secrets/redis.password", "ACP_STORE_SECRET_FILE": "/run/secrets/s"},
    )
    assert config.store_password_file == Path("/run/secrets/redis.password")
    assert config.store_secret_file == Path("/run/secrets/s")
    assert config.store_tls_ca_file == Path("ca.pem")
    with pytest.raises(SystemExit):
        parse_config(["--store", "redis://acp:hunter2@redis:6379/0"], {})
    assert "hunter2" not in capsys.readouterr().err


def test_the_password_file_is_read_without_its_newline_and_never_quoted(tmp_path: Path) -> None:
    path = tmp_path / "redis.password"
    path.write_text("hunter2\n")
    assert read_password(path) == "hunter2"
    path.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_password(path)
    path.write_bytes(b"\xffhunter2")
    with pytest.raises(ValueError, match="not UTF-8") as refused:
        read_password(path)
    assert "hunter2" not in str(refused.value)


def test_the_acl_file_keeps_only_the_passwords_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = user_rules("hunter2")
    assert "hunter2" not in rules
    assert rules.startswith("user acp on #f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7 ")
    assert "~acp:* resetchannels &acp:* -@all +" in rules
    assert acl_file("hunter2").splitlines()[0] == "user default on nopass resetkeys resetchannels -@all +ping"
    password = tmp_path / "redis.password"
    password.write_text("hunter2\n")
    assert main(["--password-file", str(password)]) == 0
    assert capsys.readouterr().out == acl_file("hunter2")


NOT_COMMANDS = {"pipeline", "pubsub", "register_script", "execute", "aclose", "close", "from_url"}
METHOD_COMMANDS = {"delete": "del"}


def test_the_acl_allows_every_redis_command_the_replicas_code_sends() -> None:
    """A command added to ``cluster/`` without its ACL rule would fail only against a secured Redis."""
    sources = " ".join(path.read_text() for path in Path(cluster.__file__).parent.glob("*.py"))
    called = set(re.findall(r"(?:client|pipe)\.([a-z_]+)\(", sources))
    scripted = {command.lower() for command in re.findall(r"redis\.call\('([A-Z]+)'", sources)}
    sent = {METHOD_COMMANDS.get(method, method) for method in called - NOT_COMMANDS} | scripted
    assert sent - set(COMMANDS) == set()
