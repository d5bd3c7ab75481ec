"""Hostile sound files against a real server's upload API: the answer, its time, the server's memory.

    python -m bench.hostile_uploads

Starts the server in-process (the operator API on a free loopback port), uploads each file four
times at once, and reports per file the statuses, the slowest answer and the growth of the
process's resident memory (the server's: the decoding children are other processes).
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import av
import httpx
import numpy as np
from PIL import Image

from actors.config import ServerConfig
from media.library import build_library
from rpc.server import ControlPlane

AT_ONCE = 4


def hostile_files(folder: Path) -> dict[str, bytes]:
    secret = folder / "secret.wav"
    with av.open(str(secret), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8_000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8_000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    picture = io.BytesIO()
    Image.new("L", (16_000, 16_000)).save(picture, "PNG")
    film = folder / "film.mp4"
    with av.open(str(film), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 640, 480, "yuv420p"
        for n in range(50):
            image = np.full((480, 640, 3), n * 5, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
    fmt = struct.pack("<HHIIHH", 1, 1, 1, 1, 1, 8)  # 8-bit mono PCM at 1 Hz
    wav_bomb = b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff"
    return {
        "ffconcat naming a file": f"ffconcat version 1.0\nfile {secret}\n".encode(),
        "sdp naming a loopback port": b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\n"
        b"t=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
        "png 16000x16000": picture.getvalue(),
        "mp4 with video": film.read_bytes(),
        "wav at 1 Hz, unknown length": wav_bomb + b"\x90" * 1_000_000,
    }


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmRSS")


async def measure(files: dict[str, bytes]) -> dict[str, Any]:
    config = ServerConfig(host="127.0.0.1", port=0, metrics_port=-1, admin_port=0, state_db=":memory:")
    plane = ControlPlane(replace(config), build_library(5))
    await plane.start()
    report: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{plane.admin_port}", timeout=60) as http:

            async def upload(name: str, data: bytes) -> tuple[int, float, str]:
                started = time.monotonic()
                response = await http.put(f"/api/sounds/{name}", content=data)
                return response.status_code, time.monotonic() - started, response.json().get("detail", "")

            for label, data in files.items():
                before = resident_bytes()
                answers = await asyncio.gather(*(upload(f"hostile{n}", data) for n in range(AT_ONCE)))
                report[label] = {
                    "bytes": len(data),
                    "statuses": sorted({status for status, _, _ in answers}),
                    "slowest_s": round(max(seconds for _, seconds, _ in answers), 3),
                    "server_memory_growth_mb": round((resident_bytes() - before) / 2**20, 1),
                    "detail": answers[0][2],
                }
    finally:
        await plane.stop(grace=1.0)
    return report


def main() -> None:
    with TemporaryDirectory() as folder:
        files = hostile_files(Path(folder))
        print(json.dumps(asyncio.run(measure(files)), indent=2))


if __name__ == "__main__":
    main()
