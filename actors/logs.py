"""Logging set-up: readable text by default, one JSON object per line for log collectors.

Every line about a device carries its device_id: in the text ("device kitchen: ...") and,
for JSON, as a ``device_id`` field, added through ``for_device``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        device_id = getattr(record, "device_id", None)
        if device_id is not None:
            entry["device_id"] = device_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = _utc
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _utc(seconds: float | None) -> Any:
    import time

    return time.gmtime(seconds)


class DeviceLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes "device <id>: " and attaches device_id to every record."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        device_id = (self.extra or {}).get("device_id")
        kwargs.setdefault("extra", {})["device_id"] = device_id
        # The id becomes part of the format string: a device_id holding "%" must not be read as
        # a placeholder (that breaks the line, and made the supervisor's handler raise).
        shown = str(device_id).replace("%", "%%")
        return f"device {shown}: {msg}", kwargs


def for_device(logger: logging.Logger, device_id: str) -> DeviceLogger:
    return DeviceLogger(logger, {"device_id": device_id})
