"""Log lines about a device name it, whatever characters its device_id holds."""

from __future__ import annotations

import logging

import pytest

from actors.logs import JsonFormatter, for_device


@pytest.mark.parametrize("device_id", ["%s", "%(message)s", "50%", "%:", "kitchen"])
def test_a_device_line_shows_the_device_id_as_given(device_id: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tests.device"):
        for_device(logging.getLogger("tests.device"), device_id).info("connected in mode %d", 3)
    [record] = caplog.records
    assert record.getMessage() == f"device {device_id}: connected in mode 3"
    assert getattr(record, "device_id", None) == device_id


def test_a_json_line_carries_the_device_id_as_its_own_field(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tests.device"):
        for_device(logging.getLogger("tests.device"), "50%").info("pressed")
    [record] = caplog.records
    assert '"device_id": "50%"' in JsonFormatter().format(record)
