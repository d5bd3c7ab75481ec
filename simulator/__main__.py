"""Command line: connect one simulated device, run a short script of button actions, report what happens.

Example: ``python -m simulator --target localhost:50051 --id kitchen mode mode play wait --save recordings/``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc

from simulator.buttons import Button, EventType
from simulator.device import (
    DEFAULT_DEVICE_ID,
    DEFAULT_TARGET,
    AudioLoopError,
    EventLostError,
    SimulatedDevice,
)
from simulator.leds import Leds, format_leds
from simulator.reconnect import Reconnector
from simulator.recording import Recording

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

_BUTTONS = {"mode": Button.MODE, "stop": Button.STOP, "play": Button.PLAY}
_EVENT_PREFIXES = {"": EventType.PRESS, "hold-": EventType.HOLD, "release-": EventType.RELEASE}

EPILOG = """\
actions (run in order; the device connects before the first one):
  mode, stop, play             press the button (PRESS event) and print the server's ack
  hold-BUTTON, release-BUTTON  send a HOLD or RELEASE event for mode/stop/play, e.g. hold-mode
  sleep=SECONDS                do nothing for a while (LED changes and recordings still print)
  wait                         wait until one more recording has completed than earlier waits
                               consumed (so "play wait play wait" waits for two); bounded by --timeout
  disconnect, connect          press the Connect (power) button: close or reopen the connection;
                               presses made while disconnected are sent after the next connect
With no action the device stays connected until Ctrl-C; with --reconnect it also comes back after
each loss (a server restart, a failover), waiting min(1.8^n, 60) s less up to half of it at random.

output: one line per event, prefixed with seconds since start: each LED change as six hex colours
(RRGGBBAA, led_0 first), each ack, each recording (duration, packets), each stream the server ends.

exit status: 0 on success; 1 if the server cannot be reached, an ack or a recording did not come in
time, the audio loop died (stray is_end or undecodable Opus data) or the server ended a stream with
an error; 2 on a bad command line; 130 on Ctrl-C.
"""


@dataclass(frozen=True)
class Action:
    """One step of the script, parsed up front so a typo fails before anything connects."""

    kind: Literal["event", "sleep", "wait", "connect", "disconnect"]
    text: str
    button: Button = Button.MODE
    event: EventType = EventType.PRESS
    seconds: float = 0.0


def parse_action(text: str) -> Action:
    if text == "wait":
        return Action(kind="wait", text=text)
    if text == "connect":
        return Action(kind="connect", text=text)
    if text == "disconnect":
        return Action(kind="disconnect", text=text)
    if text.startswith("sleep="):
        try:
            seconds = float(text.removeprefix("sleep="))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad sleep duration in {text!r}") from None
        if seconds < 0:
            raise argparse.ArgumentTypeError(f"negative sleep in {text!r}")
        return Action(kind="sleep", text=text, seconds=seconds)
    for prefix, event in _EVENT_PREFIXES.items():
        name = text.removeprefix(prefix) if prefix else text
        if (not prefix or text.startswith(prefix)) and name in _BUTTONS:
            return Action(kind="event", text=text, button=_BUTTONS[name], event=event)
    raise argparse.ArgumentTypeError(f"unknown action {text!r} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="A headless device that talks to the control plane exactly as the real device does.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("actions", nargs="*", type=parse_action, metavar="ACTION", help="see below")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="server address (default: %(default)s)")
    parser.add_argument("--id", default=DEFAULT_DEVICE_ID, help="device_id metadata (default: %(default)s)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds a 'wait' or an ack may take before the run fails (default: %(default)s)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        help="seconds to reach the server before giving up (default: %(default)s)",
    )
    parser.add_argument("--save", type=Path, metavar="DIR", help="write each recording as DIR/<id>-<n>.wav")
    parser.add_argument(
        "--no-realtime-playback",
        action="store_true",
        help="read the next clip at once instead of waiting for the previous one to play",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="with no actions: reconnect after every loss, with jittered exponential backoff",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the device's internals too")
    return parser


class Reporter:
    """Prints what the device sees as it happens, and saves the recordings."""

    def __init__(self, device: SimulatedDevice, save_dir: Path | None) -> None:
        self.device = device
        self.save_dir = save_dir
        self.started = time.monotonic()
        self.saved: list[Path] = []
        device.on_leds = self.leds
        device.on_recording = self.recording
        device.on_stream_end = self.stream_end
        device.on_audio_error = self.audio_error

    def say(self, text: str) -> None:
        print(f"{time.monotonic() - self.started:8.3f}s  {text}", flush=True)

    def leds(self, leds: Leds) -> None:
        self.say(f"leds  {format_leds(leds)}")

    def recording(self, recording: Recording) -> None:
        number = len(self.device.completed_recordings)
        self.say(f"recording {number}: {recording.duration:.3f} s, {len(recording.packets)} packets")
        if self.save_dir is not None:
            safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", self.device.device_id)
            path = recording.save_wav(self.save_dir / f"{safe_id}-{number}.wav")
            self.saved.append(path)
            self.say(f"saved {path}")

    def stream_end(self, kind: str, code: grpc.StatusCode, details: str) -> None:
        self.say(f"the server ended the {kind} stream: {code.name} {details}".rstrip())

    def audio_error(self, reason: str) -> None:
        self.say(f"audio loop died: {reason}")


async def perform(device: SimulatedDevice, action: Action, timeout: float, waited: int) -> int:
    """Run one action; returns how many recordings 'wait' has consumed so far."""
    if action.kind == "event":
        ack = await asyncio.wait_for(device.press(action.button, action.event), timeout)
        print(f"{'':10}{action.text} -> ack={ack}", flush=True)
    elif action.kind == "sleep":
        await asyncio.sleep(action.seconds)
    elif action.kind == "wait":
        await device.wait_for_recordings(waited + 1, timeout)
        return waited + 1
    elif action.kind == "disconnect":
        await device.disconnect()
    elif not device.connected:
        await device.connect()
    return waited


async def run(args: argparse.Namespace) -> int:
    device = SimulatedDevice(
        args.target,
        args.id,
        play_in_real_time=not args.no_realtime_playback,
        connect_timeout=args.connect_timeout,
    )
    reporter = Reporter(device, args.save)
    if args.reconnect and not args.actions:
        return await stay_connected(device, reporter)
    try:
        await device.connect()
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    reporter.say(f"connected to {args.target} as {args.id!r}")
    status = EXIT_OK
    try:
        waited = 0
        for action in args.actions:
            waited = await perform(device, action, args.timeout, waited)
        if not args.actions:
            await asyncio.Event().wait()
    except TimeoutError as exc:
        print(f"error: timed out: {exc}", file=sys.stderr)
        status = EXIT_FAILED
    except (EventLostError, AudioLoopError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = EXIT_FAILED
    finally:
        await device.disconnect()
    if device.audio_error is not None:
        print(f"error: the audio loop died: {device.audio_error}", file=sys.stderr)
        status = EXIT_FAILED
    for kind, (code, details) in device.stream_errors.items():
        print(f"error: the server ended the {kind} stream: {code.name} {details}", file=sys.stderr)
        status = EXIT_FAILED
    return status


async def stay_connected(device: SimulatedDevice, reporter: Reporter) -> int:
    """Until Ctrl-C: every loss is followed by a reconnect after a backoff wait."""
    reconnector = Reconnector(device)
    reconnector.start()
    try:
        await asyncio.Event().wait()
    finally:
        await reconnector.stop()
        reporter.say(f"{reconnector.attempts} connects tried, {reconnector.losses} connections lost")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
