"""How long a restart with stored uploads takes until gRPC answers SERVING.

    python -m bench.restart                      # 20 stored 15-minute sounds, 3 restarts
    python -m bench.restart --sounds 0           # the same server with no uploads, for comparison
    python -m bench.restart --drop-packets       # packets gone: encoded again after the port opens

The shelf is made once in --work (one real 15-minute MP3, encoded once, stored under every name,
as uploads are stored) and reused. Each run starts `python -m actors.main` on it and asks the
health service every 20 ms; with --drop-packets it also waits for every sound to be restored.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from media.catalog import SoundCatalog
from media.library import build_library
from media.sandbox import DecodeJob, DecodeSandbox

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=899.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drop-packets", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/acp-bench-restart"))
    args = parser.parse_args()
    state_db = args.work / f"{args.sounds}x{args.seconds:g}" / "state" / "devices.sqlite3"
    state_db.parent.mkdir(parents=True, exist_ok=True)
    shelve(state_db.parent / "sounds", args.sounds, args.seconds, args.work)
    results = []
    for _ in range(args.runs):
        if args.drop_packets:
            for packets in (state_db.parent / "sounds" / "uploads").glob("*.packets"):
                packets.unlink()
        results.append(restart(state_db, args.sounds if args.drop_packets else 0))
    print(json.dumps({"sounds": args.sounds, "seconds_each": args.seconds, "runs": results}, indent=2))


def shelve(shelf: Path, count: int, seconds: float, work: Path) -> None:
    """`count` uploads of one real `seconds`-long MP3 on the shelf, stored as the server stores them."""
    if count == 0 or len(list((shelf / "uploads").glob("*.packets"))) == count:
        return
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"source-{seconds:g}.mp3"
    if not source.exists():
        _write_mp3(source, seconds)
    data = source.read_bytes()
    library = build_library(5)
    (sound,) = DecodeSandbox().encode_blocking([DecodeJob("source", data, library.frame_ms, "the source")])
    if isinstance(sound, Exception):
        raise sound
    catalog = SoundCatalog(library, shelf)
    for index in range(count):
        name = f"stored-{index:02d}"
        catalog.add(name, replace(sound, name=name), data, announce=False)


def _write_mp3(path: Path, seconds: float) -> None:
    import av
    from av.audio.stream import AudioStream

    rate = 44_100
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * rate)) / rate
    signal_ = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    pcm = np.round(signal_ * 32767).astype(np.int16).reshape(1, -1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono", options={"b": "64k"})
        assert isinstance(stream, AudioStream)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def restart(state_db: Path, restored: int) -> dict[str, Any]:
    """Start the server on the shelf; seconds until gRPC answers SERVING (and until `restored` sounds
    were encoded again, when waiting for them)."""
    port = _free_port()
    log = state_db.parent.parent / "server.log"
    command = [sys.executable, "-m", "actors.main", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--metrics-port", "-1", "--admin-port", "-1", "--state-db", str(state_db)]
    with log.open("wb") as sink:
        started = time.monotonic()
        server = subprocess.Popen(command, cwd=ROOT, stderr=sink)
    try:
        serving = _until_serving(f"127.0.0.1:{port}", started, server)
        result: dict[str, Any] = {"grpc_serving_s": round(serving, 3)}
        if restored:
            while log.read_text(errors="replace").count("restored sound") < restored:
                if time.monotonic() - started > 600:
                    raise TimeoutError("the stored sounds were not restored within 10 minutes")
                time.sleep(0.1)
            result["all_restored_s"] = round(time.monotonic() - started, 3)
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def _until_serving(target: str, started: float, server: subprocess.Popen[bytes]) -> float:
    # Without these, a refused connection makes the channel wait a second or more before retrying.
    backoff = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20)]
    backoff.append(("grpc.max_reconnect_backoff_ms", 20))
    with grpc.insecure_channel(target, options=backoff) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while server.poll() is None:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
            except grpc.RpcError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"the server exited with status {server.returncode}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


if __name__ == "__main__":
    main()
