"""What FFmpeg would read some bytes as, found without letting any demuxer open them.

PyAV only probes by opening, which runs the detected demuxer's header reader: for a concat
script or an SDP file that already opens other files or sockets. libavformat's own probe
function only scores the bytes against every demuxer's signature check, so it is called
directly (ctypes, on the libavformat PyAV itself loaded).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av  # noqa: F401  (loads the libavformat the probe must come from)

PROBE_BYTES = 1 << 20
"""FFmpeg's own probing stops at 1 MiB (PROBE_BUF_MAX): a format not told by then is not told."""

_PADDING = 64
"""AVPROBE_PADDING_SIZE (32) zero bytes must follow the probed bytes; a little more does no harm."""


@dataclass(frozen=True, slots=True)
class Detected:
    name: str
    """The demuxer's name, e.g. `wav` or `mov,mp4,m4a,3gp,3g2,mj2`."""
    long_name: str


class _ProbeData(ctypes.Structure):
    """AVProbeData, public and unchanged since FFmpeg 1.x."""

    _fields_ = [
        ("filename", ctypes.c_char_p),
        ("buf", ctypes.POINTER(ctypes.c_ubyte)),
        ("buf_size", ctypes.c_int),
        ("mime_type", ctypes.c_char_p),
    ]


class _InputFormat(ctypes.Structure):
    """The first two fields of AVInputFormat (public API): its names."""

    _fields_ = [("name", ctypes.c_char_p), ("long_name", ctypes.c_char_p)]


def detect_format(data: bytes) -> Detected | None:
    """The demuxer FFmpeg would pick for these bytes, judged from their first MiB, or None.

    No file name goes with the bytes, so an extension cannot sway the choice.
    """
    head = data[:PROBE_BYTES]
    if not head:
        return None
    buffer = (ctypes.c_ubyte * (len(head) + _PADDING)).from_buffer_copy(head + bytes(_PADDING))
    probe = _ProbeData(b"", buffer, len(head), None)
    score = ctypes.c_int(0)
    found = _probe_function()(ctypes.byref(probe), 1, ctypes.byref(score))
    if not found:
        return None
    names = ctypes.cast(found, ctypes.POINTER(_InputFormat)).contents
    return Detected(
        (names.name or b"").decode("ascii", "replace"), (names.long_name or b"").decode("utf-8", "replace")
    )


def load() -> None:
    """Find libavformat's probe now, while this process may still read /proc (a sandbox may not)."""
    _probe_function()


@functools.cache
def _probe_function() -> Callable[..., int | None]:
    function = _libavformat().av_probe_input_format3
    function.restype = ctypes.c_void_p
    function.argtypes = [ctypes.POINTER(_ProbeData), ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    probe: Callable[..., int | None] = function
    return probe


def _libavformat() -> ctypes.CDLL:
    """The libavformat mapped into this process by PyAV (its wheel bundles its own), else the system's."""
    maps = Path("/proc/self/maps")
    if maps.exists():
        for line in maps.read_text().splitlines():
            path = line.rsplit(" ", 1)[-1]
            if "/libavformat" in path and ".so" in path:
                return ctypes.CDLL(path)
    system = ctypes.util.find_library("avformat")
    if system is None:
        raise OSError("libavformat, which PyAV uses, cannot be found to probe formats")
    return ctypes.CDLL(system)
