"""A pytest plugin: no secret a test uses may appear in a log, in-process or a server's log file.

Which values are secrets: every module-level constant of a test module whose name ends in
TOKEN, SECRET or PASSWORD (``OPERATOR_TOKEN = "..."``); every token in a ``*.tokens`` file
and the content of every ``*secret*`` and ``*.password`` file a test writes under its
``tmp_path`` (the server's own token, device-secret and Redis password files); whatever a
test or helper registers with ``secret(value)`` (a generated Redis password, a minted
device token); and the device token of every device the logs name, under each of those
secrets (``rpc.auth.token_for``).

What is read: every log record emitted while a test runs (the root logger, at INFO, the
server's default level, and above), with its traceback; and every ``*.log`` file under the
test's ``tmp_path`` (the logs of servers run as processes, ``tests.server_process``). A
secret found fails the test at teardown, naming the logger or file and the secret's first
characters only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from rpc.auth import token_for

MIN_SECRET_CHARS = 12
"""Shorter values are not taken for secrets: they would match ordinary words in logs."""

SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD)S?$")
"""``OPERATOR_TOKEN``, ``DEVICE_AUTH_SECRET``; not ``TOKEN_KEY`` (the name of a metadata key)."""

MAX_DEVICE_IDS = 2000
"""Device tokens are derived for at most this many devices a test's logs name."""

SECRET_FILES = ("*secret*", "*.password")
"""Files whose whole content is a secret: a device auth secret, a Redis password."""

MAX_SECRET_FILE_BYTES = 1024
"""A secret file holds a short secret; a larger file named so (a test's sound, say) is not one."""

_known: set[str] = set()
_modules_read: set[str] = set()


def secret(value: str | bytes) -> str:
    """Register ``value`` as a secret no log may show; returns it (as text) for the caller to use."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = text.strip()
    if len(text) >= MIN_SECRET_CHARS:
        _known.add(text)
    return text


def known_secrets() -> frozenset[str]:
    return frozenset(_known)


def found_in(text: str, secrets: Iterable[str]) -> list[str]:
    return sorted(value for value in secrets if value in text)


def hint(value: str) -> str:
    """Enough to tell which secret it is, not enough to use it."""
    return f"{value[:4]}… ({len(value)} characters)"


def read_module(module: ModuleType | None) -> None:
    """Register the module's secret-named constants, once per module."""
    if module is None or module.__name__ in _modules_read:
        return
    _modules_read.add(module.__name__)
    for name, value in vars(module).items():
        if name.isupper() and SECRET_NAME.search(name) and isinstance(value, str | bytes):
            secret(value)


def read_secret_files(directory: Path) -> None:
    """The token and secret files a test wrote for the server: what they hold is secret."""
    for path in directory.rglob("*.tokens"):
        for line in _lines(path):
            secret(line.split(":", 1)[1] if ":" in line else line)
    for pattern in SECRET_FILES:
        for path in directory.rglob(pattern):
            if path.is_file() and path.stat().st_size <= MAX_SECRET_FILE_BYTES:
                secret(path.read_bytes())


def _lines(path: Path) -> Iterator[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    yield from (line.strip() for line in text.splitlines() if line.strip())


class LogReader(logging.Handler):
    """Keeps what each record says (message and traceback), for the check at teardown, and the
    device_ids the records are about (``actors.logs.for_device``)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[tuple[str, str]] = []
        self.device_ids: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: its raw parts
            text = f"{record.msg} {record.args}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        self.lines.append((record.name, text))
        device_id = getattr(record, "device_id", None)
        if isinstance(device_id, str) and len(self.device_ids) < MAX_DEVICE_IDS:
            self.device_ids.add(device_id)


def device_tokens(secrets: Iterable[str], device_ids: Iterable[str]) -> set[str]:
    """The token each logged device would hold under each secret (``rpc.auth``): a device token
    is a secret too, though no test names it."""
    ids = list(device_ids)
    return {token_for(value.encode(), device_id) for value in secrets for device_id in ids}


HEX_TOKEN = re.compile(r"[0-9a-fA-F]{64}")
"""What a device token looks like (a hex HMAC-SHA256): derived tokens are looked up, not searched."""


def leaks(reader: LogReader, log_files: Iterable[Path], secrets: Iterable[str]) -> list[str]:
    """Where each secret was found: ``logger NAME`` or ``file PATH``, with the secret's hint."""
    wanted = list(secrets)
    derived = device_tokens(wanted, reader.device_ids)

    def found(text: str) -> list[str]:
        candidates = {match.lower() for match in HEX_TOKEN.findall(text)}
        return found_in(text, wanted) + sorted(candidates & derived)

    places: list[str] = []
    for name, text in reader.lines:
        places += [f"logger {name}: {hint(value)}" for value in found(text)]
    for path in log_files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        places += [f"file {path}: {hint(value)}" for value in found(text)]
    return places


@pytest.fixture(autouse=True)
def no_secret_reaches_a_log(request: pytest.FixtureRequest) -> Iterator[None]:
    read_module(getattr(request, "module", None))
    directory: Path | None = (
        request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    )
    reader = LogReader()
    root = logging.getLogger()
    level = root.level
    root.addHandler(reader)
    if level != logging.NOTSET:
        root.setLevel(min(level, logging.INFO))
    try:
        yield
    finally:
        root.removeHandler(reader)
        root.setLevel(level)
    log_files: list[Path] = []
    if directory is not None:
        read_secret_files(directory)
        log_files = sorted(directory.rglob("*.log"))
    found = leaks(reader, log_files, known_secrets())
    if found:
        pytest.fail("a secret reached a log:\n  " + "\n  ".join(found), pytrace=False)
