"""The device_id call metadata every stream must carry."""

from __future__ import annotations

from collections.abc import Iterable

MAX_DEVICE_ID_BYTES = 128


class BadDeviceId(ValueError):
    """The message is sent to the device as the INVALID_ARGUMENT details."""


def device_id_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    values = [value for key, value in (metadata or ()) if key == "device_id"]
    if not values:
        raise BadDeviceId("missing device_id call metadata: every stream must name its device")
    if len(values) > 1:
        raise BadDeviceId(f"device_id call metadata given {len(values)} times; give it once")
    value = values[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadDeviceId("device_id call metadata is not valid UTF-8") from None
    if not value:
        raise BadDeviceId("device_id call metadata is empty")
    size = len(value.encode("utf-8"))
    if size > MAX_DEVICE_ID_BYTES:
        raise BadDeviceId(f"device_id is {size} bytes long; at most {MAX_DEVICE_ID_BYTES} are allowed")
    if not value.isprintable():
        raise BadDeviceId("device_id contains control characters")
    return str(value)
