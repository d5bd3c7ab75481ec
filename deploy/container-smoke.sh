#!/usr/bin/env bash
# Container smoke test: build the image from this checkout, run the server inside it, connect a
# simulated device from outside, play a sound and check the recording, check the image's health
# probe, then stop the server with SIGTERM and expect a clean exit.
#
# Uses a Docker engine where one answers; otherwise buildah (no daemon), with local stand-ins for
# the base image made by ../shared/tools/standin-images.sh when the base cannot be pulled.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${SMOKE_IMAGE:-localhost/audio-control-plane:smoke}
PORT=${SMOKE_PORT:-50071}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
STANDIN=${STANDIN_IMAGES:-../shared/tools/standin-images.sh}
WORK=$(mktemp -d)
SERVER_PID=
CONTAINER=
log() { printf '== %s\n' "$*" >&2; }

bin/setup-env

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ENGINE=docker
else
    ENGINE=buildah
    if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
        log "installing buildah and debootstrap"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null
    fi
    B=(buildah --storage-driver vfs)
fi

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    if [ "$ENGINE" = buildah ] && [ -n "$CONTAINER" ]; then "${B[@]}" rm "$CONTAINER" >/dev/null 2>&1 || true; fi
    if [ "$ENGINE" = docker ] && [ -n "$CONTAINER" ]; then docker rm -f "$CONTAINER" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log "building $IMAGE with $ENGINE (base $BASE_IMAGE)"
if [ "$ENGINE" = docker ]; then
    docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" .
else
    if [ -z "$("${B[@]}" images -q "$BASE_IMAGE" 2>/dev/null)" ]; then
        log "no local $BASE_IMAGE: making stand-in base images"
        bash "$STANDIN"
    fi
    "${B[@]}" bud --isolation chroot --pull-never --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
        || { tail -50 "$WORK/build.log"; exit 1; }
    user=$("${B[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
    cmd=$("${B[@]}" inspect --type image --format '{{.OCIv1.Config.Cmd}}' "$IMAGE")
    log "image runs as user $user, CMD $cmd"
    [ "$user" != "" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] || { echo "image runs as root" >&2; exit 1; }
    [ "$cmd" = '[python -m actors.main]' ] || { echo "CMD is not the exec-form server command" >&2; exit 1; }
fi

log "starting the server in the container on 127.0.0.1:$PORT"
if [ "$ENGINE" = docker ]; then
    CONTAINER=$(docker run -d --network host -e "ACP_PORT=$PORT" -e ACP_METRICS_PORT=-1 -e ACP_GRACE=5 "$IMAGE")
else
    CONTAINER=$("${B[@]}" from --pull-never "$IMAGE")
    "${B[@]}" run --isolation chroot --env "ACP_PORT=$PORT" --env ACP_METRICS_PORT=-1 --env ACP_GRACE=5 \
        "$CONTAINER" -- python -m actors.main >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
fi

healthy() {
    if [ "$ENGINE" = docker ]; then
        docker exec "$CONTAINER" python -m rpc.healthcheck "127.0.0.1:$PORT" >/dev/null 2>&1
    else
        "${B[@]}" run --isolation chroot "$CONTAINER" -- python -m rpc.healthcheck "127.0.0.1:$PORT" >/dev/null 2>&1
    fi
}
for _ in $(seq 1 60); do
    healthy && break
    sleep 1
done
healthy || { echo "the server in the container never became healthy" >&2; cat "$WORK/server.log" 2>/dev/null; exit 1; }
log "the image's health probe reports SERVING"

log "a simulated device plays mode 2 and records it"
.venv/bin/python -m simulator --target "127.0.0.1:$PORT" --id smoke --no-realtime-playback \
    --timeout 30 mode mode play wait --save "$WORK/recordings"
.venv/bin/python - "$WORK/recordings" <<'PY'
import sys, wave
from pathlib import Path

import numpy as np

from media.library import build_library

[path] = sorted(Path(sys.argv[1]).glob("*.wav"))
with wave.open(str(path)) as clip:
    assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (48000, 1, 2)
    pcm = np.frombuffer(clip.readframes(clip.getnframes()), dtype=np.int16)
expected = build_library(5).for_mode(2).streamed_duration
duration = len(pcm) / 48000
rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
print(f"recording {path.name}: {duration:.2f} s (sound: {expected:.2f} s), rms {rms:.0f}")
assert abs(duration - expected) < 0.001, "the recording has the sound's length"
assert rms > 300, "the recording is not silent"
PY

log "SIGTERM: the server drains and exits"
if [ "$ENGINE" = docker ]; then
    docker stop -t 10 "$CONTAINER" >/dev/null
    code=$(docker wait "$CONTAINER")
else
    pid=$(pgrep -f "python -m actors.main" -n --uid 10001 || true)
    [ -n "$pid" ] || { echo "cannot find the server process" >&2; exit 1; }
    kill -TERM "$pid"
    code=0
    wait "$SERVER_PID" || code=$?
    SERVER_PID=
fi
[ "$code" = 0 ] || { echo "the server exited with $code" >&2; cat "$WORK/server.log" 2>/dev/null; exit 1; }
grep -q "stopped" "$WORK/server.log" 2>/dev/null || [ "$ENGINE" = docker ]
log "container smoke test passed"
