"""acp-admin: the operator's command line for the control plane's HTTP API (docs/admin-api.md).

Standard library only (urllib, json, argparse), so it runs on any host with Python 3.11,
without the server's dependencies. Formatting lives in pure functions that take the
reply and the current time, so it is tested without a server.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import mimetypes
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "ACP_ADMIN_URL"
TOKEN_ENV = "ACP_ADMIN_TOKEN"
DEFAULT_TIMEOUT = 10.0
PAGE_LIMIT = 1000  # the most the server returns per page; --all pages with it
# The server sends a keep-alive comment every 15 s: three missed ones mean the stream is dead.
TAIL_SILENCE = 45.0
TAIL_RETRY_MAX = 30.0
# Content types a cross-site form can send: the server refuses them on every action (415),
# whatever an uploaded file holds, so an upload never sends one.
FORM_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
LIST_PREVIEW = 3  # a cell shows this many items of a long list, then "+N"

Json = dict[str, Any]


class CliError(Exception):
    """A failure the operator should read on stderr; the command exits 1."""


class HttpError(CliError):
    """The server answered with an error status; the message carries its ``detail``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# Pure helpers: times, tables, replies


def parse_time(value: str) -> datetime:
    """An API time (ISO 8601 UTC, ``Z`` suffix) as an aware datetime."""
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def relative_time(value: str | None, now: datetime) -> str:
    """``12s ago`` / ``5m ago`` / ``3h ago`` for the last day, an ISO time beyond it.

    Operators scan a table for "is it alive now"; a relative age answers that at a glance,
    while an old time is more useful as a date. ``now`` is a parameter so tests fix it.
    """
    if value is None:
        return "never"
    try:
        when = parse_time(value)
    except ValueError:
        return value
    seconds = (now - when).total_seconds()
    if seconds < -1:
        return f"in {_span(-seconds)}"
    if seconds < 86400:
        return f"{_span(max(seconds, 0.0))} ago"
    return when.astimezone(now.tzinfo).isoformat(timespec="seconds")


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds // 3600)}h"


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing blanks."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def render_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """A key/value listing with the values in one column."""
    width = max((len(key) for key, _ in pairs), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}".rstrip() for key, value in pairs)


def cell(value: Any, nested: bool = False) -> str:
    """Any JSON value as one short table cell: lists shortened, objects as ``k=v``.

    An object inside an object is bracketed, so an announcement's counts stay one item.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        shown = ",".join(cell(item, True) for item in value[:LIST_PREVIEW])
        more = len(value) - LIST_PREVIEW
        return f"{shown} +{more}" if more > 0 else (shown or "-")
    if isinstance(value, dict):
        if not value:
            return "-"
        items = [f"{key}={cell(item, True)}" for key, item in value.items()]
        return f"({','.join(items)})" if nested else " ".join(items)
    return str(value)


def mode_text(device: Json) -> str:
    """The mode, and the one waiting for the device to reconnect."""
    mode = cell(device.get("mode"))
    desired = device.get("desired_mode")
    return mode if desired is None else f"{mode} (->{desired})"


def playing_text(device: Json) -> str:
    playing = device.get("playing")
    if not playing:
        return "-"
    return str(playing.get("sound", "?"))


DEVICE_HEADERS = ("DEVICE", "CONNECTED", "MODE", "STATUS", "PLAYING", "LAST SEEN", "TAGS")


def device_row(device: Json, now: datetime) -> list[str]:
    return [
        str(device.get("device_id", "?")),
        cell(bool(device.get("connected"))),
        mode_text(device),
        cell(device.get("status")),
        playing_text(device),
        relative_time(device.get("last_seen"), now),
        ",".join(device.get("tags") or []) or "-",
    ]


def format_device_list(devices: Sequence[Json], total: int | None, now: datetime) -> str:
    """The device table and a count line saying whether more pages exist."""
    if not devices:
        return "no devices match"
    lines = render_table(DEVICE_HEADERS, [device_row(device, now) for device in devices])
    shown = len(devices)
    if total is not None and total > shown:
        return f"{lines}\n{shown} of {total} devices (--all for every one)"
    return f"{lines}\n{shown} device{'s' if shown != 1 else ''}"


def _time_pair(value: str | None, now: datetime) -> str:
    if value is None:
        return "-"
    return f"{relative_time(value, now)} ({value})"


def format_device(device: Json, now: datetime) -> str:
    """Everything one device shows, the six LED colours included."""
    playing = device.get("playing")
    if playing:
        since = playing.get("since")
        play = f"{playing.get('sound', '?')} (mode {cell(playing.get('mode'))}, since {relative_time(since, now)})"
    else:
        play = "-"
    pairs = [
        ("device", str(device.get("device_id", "?"))),
        ("connected", cell(bool(device.get("connected")))),
        ("connected since", _time_pair(device.get("connected_since"), now)),
        ("peer", cell(device.get("peer"))),
        ("status", cell(device.get("status"))),
        ("mode", cell(device.get("mode"))),
        ("desired mode", cell(device.get("desired_mode"))),
        ("playing", play),
        ("last seen", _time_pair(device.get("last_seen"), now)),
        ("tags", ", ".join(device.get("tags") or []) or "-"),
    ]
    leds = list(device.get("leds") or [])
    pairs += [(f"led_{i}", str(colour)) for i, colour in enumerate(leds)]
    return render_pairs(pairs)


COUNT_ORDER = ("started", "offline", "busy", "refused")


def format_counts(counts: Json) -> str:
    """The four announce outcomes in a fixed order, then any the server adds."""
    keys = [key for key in COUNT_ORDER if key in counts] + [key for key in counts if key not in COUNT_ORDER]
    return "  ".join(f"{key} {counts[key]}" for key in keys)


def format_announce(reply: Json) -> str:
    """The counts first (what an operator checks), then each device's result."""
    head = f"announcement {cell(reply.get('announcement'))}: {cell(reply.get('sound'))}"
    lines = [head, format_counts(reply.get("counts") or {})]
    results: Json = reply.get("results") or {}
    if results:
        lines.append(
            render_table(("DEVICE", "RESULT"), [[str(d), str(r)] for d, r in sorted(results.items())])
        )
    return "\n".join(lines)


def format_sounds(reply: Json) -> str:
    """The sound table, then which sound each mode plays."""
    sounds = reply.get("sounds") or []
    rows = [
        [
            str(sound.get("name", "?")),
            cell(sound.get("source")),
            _duration(sound.get("duration")),
            ",".join(str(mode) for mode in sound.get("modes") or []) or "-",
        ]
        for sound in sounds
    ]
    parts = [render_table(("SOUND", "SOURCE", "DURATION", "MODES"), rows) if rows else "no sounds"]
    modes = reply.get("modes") or []
    if modes:
        parts.append(
            render_table(("MODE", "SOUND"), [[cell(m.get("mode")), cell(m.get("sound"))] for m in modes])
        )
    return "\n\n".join(parts)


def _duration(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.1f}s"
    return cell(value)


AUDIT_HEADERS = ("ID", "AT", "WHO", "ROLE", "ACTION", "TARGET", "DEVICES", "RESULT")


def format_audit(reply: Json, now: datetime) -> str:
    """Audit entries newest first, and how to fetch the page before."""
    entries = reply.get("entries") or []
    if not entries:
        return "no audit entries"
    rows = [
        [
            cell(entry.get("id")),
            relative_time(entry.get("at"), now),
            cell(entry.get("who")),
            cell(entry.get("role")),
            cell(entry.get("action")),
            cell(entry.get("target")),
            cell(entry.get("devices")),
            cell(entry.get("result")),
        ]
        for entry in entries
    ]
    text = render_table(AUDIT_HEADERS, rows)
    after = reply.get("next")
    return text if after is None else f"{text}\nolder entries: --before {after}"


def error_message(status: int, body: bytes, token_sent: bool) -> str:
    """``HTTP 404: <detail>`` from a JSON error body, with the fields a 422 names.

    A 401 also says how to give a token, since that is the only fix an operator has.
    """
    detail = body.decode("utf-8", "replace").strip()[:300] or http.client.responses.get(status, "error")
    errors: list[Any] = []
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        detail = str(parsed.get("detail", detail))
        errors = parsed.get("errors") or []
    message = f"HTTP {status}: {detail}"
    fields = [f"{e.get('field', '?')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)]
    if fields:
        message += " (" + "; ".join(fields) + ")"
    if status == 401:
        if token_sent:
            message += "; the token was refused: pass the right one with --token-file FILE or $" + TOKEN_ENV
        else:
            message += "; the server needs a token: pass --token-file FILE or set $" + TOKEN_ENV
    return message


def read_token(text: str) -> str:
    """The token of a token file: its first non-empty line.

    A line may be ``NAME:TOKEN`` as in the server's own token files (docs/admin-api.md), so
    the same file works on both sides; the name stays local.
    """
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.split(":", 1)[1].strip() if ":" in line else line
    raise CliError("the token file holds no token")


def upload_type(path: str) -> str:
    """The Content-Type for an uploaded sound, guessed from its extension.

    Compressed files (``.wav.gz``) and types a cross-site form can send (which the server
    refuses) go as ``application/octet-stream``; FFmpeg finds the format itself.
    """
    guessed, encoding = mimetypes.guess_type(path)
    if guessed is None or encoding is not None or guessed in FORM_TYPES:
        return "application/octet-stream"
    return guessed


def split_devices(value: str) -> list[str]:
    """``a,b, c`` as the device ids it names; argparse turns an empty list into exit 2."""
    devices = [part.strip() for part in value.split(",") if part.strip()]
    if not devices:
        raise argparse.ArgumentTypeError("names no device")
    return devices


# ---------------------------------------------------------------------------------------------
# Server-sent events


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type, its (joined) data and the last event id seen."""

    event: str
    data: str
    id: str | None


class SseParser:
    """The WHATWG event-stream parser, one line at a time.

    Written here rather than taken from a library so the client needs nothing but the
    standard library; the id survives dispatch (as the spec says), which is what a
    reconnect sends back as ``Last-Event-ID``.
    """

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (its end of line optional); an event when a blank line ends it."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. the keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def reset(self) -> None:
        """Forget a half-received event: the connection it came on is gone."""
        self._event = ""
        self._data = []

    def _dispatch(self) -> SseEvent | None:
        event, data = self._event or "message", self._data
        self.reset()
        if not data:
            return None
        return SseEvent(event=event, data="\n".join(data), id=self.last_id)


def parse_sse(lines: Iterable[str], parser: SseParser | None = None) -> Iterator[SseEvent]:
    """Every event in a stream of lines."""
    parser = parser or SseParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


def event_data(event: SseEvent) -> Any:
    """The event's data as JSON, or the raw text when it is not JSON."""
    try:
        return json.loads(event.data)
    except ValueError:
        return event.data


def event_json(event: SseEvent) -> str:
    """One JSON line per event for ``tail --json``: its id, type and data."""
    event_id: int | str | None = event.id
    if event.id is not None and event.id.isdigit():
        event_id = int(event.id)
    return json.dumps(
        {"id": event_id, "event": event.event, "data": event_data(event)}, separators=(",", ":")
    )


def device_summary(device: Json) -> str:
    """What changed on a device event, in one line: connection, mode, status, sound, LEDs, tags."""
    parts = [
        "online" if device.get("connected") else "offline",
        f"mode {mode_text(device)}",
        cell(device.get("status")),
    ]
    if device.get("playing"):
        parts.append(f"playing {playing_text(device)}")
    leds = device.get("leds")
    if leds:
        parts.append("leds " + " ".join(str(colour) for colour in leds))
    tags = device.get("tags")
    if tags:
        parts.append("tags " + ",".join(tags))
    return " ".join(parts)


def format_event(event: SseEvent, now: datetime) -> str:
    """``TIME EVENT DEVICE summary``: the local time it arrived, '-' when no device is involved."""
    stamp = now.astimezone().strftime("%H:%M:%S")
    data = event_data(event)
    device = "-"
    if event.event == "device" and isinstance(data, dict):
        device = str(data.get("device_id", "?"))
        summary = device_summary(data)
    elif event.event == "announcement" and isinstance(data, dict):
        counts = format_counts(data.get("counts") or {})
        summary = f"#{cell(data.get('announcement'))} {cell(data.get('sound'))} {counts}"
    elif event.event == "sounds" and isinstance(data, dict):
        modes = " ".join(f"{cell(m.get('mode'))}={cell(m.get('sound'))}" for m in data.get("modes") or [])
        summary = f"{len(data.get('sounds') or [])} sounds; modes {modes or '-'}"
    elif event.event == "reset":
        summary = "events were missed; run 'list' again for the current state"
    else:
        summary = event.data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{stamp} {event.event} {device} {summary}".rstrip()


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: http.client.HTTPMessage


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL, the port always given: what a redirect may not change."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = 0
    return f"{scheme}://{host}:{port}"


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the origin the request went to.

    urllib copies every header to the new request, the bearer token included, wherever the
    redirect points; a server (or anything in between) answering 302 with another host would
    be handed the operator's token. A redirect to another origin (scheme, host or port) is
    refused instead, and the operator is told where it pointed.
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if origin(newurl) != origin(req.full_url):
            fp.close()
            raise CliError(
                f"the server at {origin(req.full_url)} redirected ({code}) to {origin(newurl)}, another"
                " origin: not followed, so the token stays with the server it was meant for (if that"
                " is the right server, pass it as --url)"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(SameOriginRedirects())


@dataclass(frozen=True)
class Client:
    """Requests to one server: every failure becomes a CliError with a message to print."""

    base_url: str
    token: str | None
    timeout: float

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        url = self.base_url + path
        return f"{url}?{urllib.parse.urlencode(query)}" if query else url

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "acp-admin"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def open(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> http.client.HTTPResponse:
        """The open response of a successful request; an error status or no answer raises CliError."""
        url = self.url(path, query)
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers(headers))
        try:
            response: http.client.HTTPResponse = _OPENER.open(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as error:
            with error:
                body = error.read()
            message = error_message(error.code, body, self.token is not None)
            retry_after = error.headers.get("Retry-After")
            if retry_after:
                message += f"; retry after {retry_after}s"
            raise HttpError(error.code, message) from None
        except TimeoutError:
            raise CliError(
                f"no reply from {self.base_url} within {timeout or self.timeout:g}s (--timeout)"
            ) from None
        except (OSError, http.client.HTTPException) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            raise CliError(
                f"cannot reach the server at {self.base_url}: {reason or type(error).__name__} "
                f"(is it running? set --url or ${URL_ENV})"
            ) from None
        return response

    def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Json | None = None,
        raw: bytes | None = None,
        content_type: str | None = None,
    ) -> Reply:
        """One request and its decoded JSON reply (None for an empty one, as a 204 sends).

        Actions always carry a JSON body (``{}`` when empty) with ``application/json``: the
        server refuses any other content type on an action (415).
        """
        headers: dict[str, str] = {}
        data: bytes | None = None
        if raw is not None:
            data, headers["Content-Type"] = raw, content_type or "application/octet-stream"
        elif method != "GET":
            data, headers["Content-Type"] = json.dumps(body or {}).encode(), "application/json"
        with self.open(method, path, query=query, data=data, headers=headers) as response:
            try:
                payload = response.read()
            except (OSError, http.client.HTTPException) as error:
                raise CliError(f"the reply from {self.base_url} broke off: {error}") from None
            status, reply_headers = response.status, response.headers
        if not payload.strip():
            return Reply(status, None, reply_headers)
        try:
            return Reply(status, json.loads(payload), reply_headers)
        except ValueError:
            raise CliError(
                f"the reply from {self.url(path)} is not JSON: is --url the control plane?"
            ) from None


def device_path(device_id: str, *rest: str) -> str:
    return "/".join(["/api/devices", urllib.parse.quote(device_id, safe=""), *rest])


# ---------------------------------------------------------------------------------------------
# Commands


@dataclass
class Context:
    """What every command needs: the client, the output mode and the streams to write to."""

    client: Client
    as_json: bool
    out: TextIO
    err: TextIO
    now: Callable[[], datetime]

    def emit(self, reply: Any, human: str) -> None:
        """The reply as JSON under --json, else the human text."""
        if self.as_json:
            print(json.dumps(reply, indent=2), file=self.out)
        else:
            print(human, file=self.out)


def utc_now() -> datetime:
    return datetime.now(UTC)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    query: dict[str, str] = {}
    if args.connected is not None:
        query["connected"] = "true" if args.connected else "false"
    if args.tag is not None:
        query["tag"] = args.tag
    if args.mode is not None:
        query["mode"] = str(args.mode)
    if args.search is not None:
        query["q"] = args.search
    if args.all:
        reply = fetch_all_devices(ctx.client, query)
    else:
        if args.limit is not None:
            query["limit"] = str(args.limit)
        reply = ctx.client.call("GET", "/api/devices", query=query).body
    ctx.emit(reply, format_device_list(reply.get("devices") or [], reply.get("total"), ctx.now()))
    return 0


def fetch_all_devices(client: Client, query: dict[str, str], page_size: int = PAGE_LIMIT) -> Json:
    """Every page, joined into one reply.

    ``event_id`` is the first page's: the earliest, so subscribing from it misses no event
    that a later page already reflected.
    """
    devices: list[Json] = []
    after: str | None = None
    first_event_id: Any = None
    total: Any = None
    while True:
        page_query = dict(query, limit=str(page_size))
        if after is not None:
            page_query["after"] = after
        page = client.call("GET", "/api/devices", query=page_query).body
        devices.extend(page.get("devices") or [])
        total = page.get("total", total)
        if first_event_id is None:
            first_event_id = page.get("event_id")
        after = page.get("next")
        if after is None:
            break
    return {"devices": devices, "total": total, "next": None, "event_id": first_event_id}


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.call("GET", device_path(args.device)).body
    ctx.emit(reply, format_device(reply, ctx.now()))
    return 0


def cmd_mode(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.call("POST", device_path(args.device, "mode"), body={"mode": args.mode})
    if reply.status == 202:
        human = f"{args.device} is offline: mode {args.mode} is applied when it reconnects"
    else:
        human = f"{args.device}: mode {args.mode} {cell((reply.body or {}).get('result', 'applied'))}"
    ctx.emit(reply.body, human)
    return 0


def cmd_play(ctx: Context, args: argparse.Namespace) -> int:
    body: Json = {}
    if args.mode is not None:
        body["mode"] = args.mode
    if args.sound is not None:
        body["sound"] = args.sound
    reply = ctx.client.call("POST", device_path(args.device, "play"), body=body).body or {}
    device = reply.get("device")
    what = f" ({playing_text(device)})" if isinstance(device, dict) and device.get("playing") else ""
    ctx.emit(reply, f"{args.device}: {cell(reply.get('result', 'started'))}{what}")
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.call("POST", device_path(args.device, "stop")).body or {}
    result = reply.get("result")
    ctx.emit(reply, f"{args.device}: {'nothing was playing' if result == 'idle' else cell(result)}")
    return 0


def cmd_tags(ctx: Context, args: argparse.Namespace) -> int:
    tags: list[str] = [] if args.clear else list(args.tags)
    reply = ctx.client.call("PUT", device_path(args.device, "tags"), body={"tags": tags}).body or {}
    device = reply.get("device")
    shown = device.get("tags") if isinstance(device, dict) else tags
    ctx.emit(reply, f"{args.device}: " + (f"tags {', '.join(shown)}" if shown else "no tags"))
    return 0


def cmd_announce(ctx: Context, args: argparse.Namespace) -> int:
    target: Json
    if args.devices is not None:
        target = {"devices": args.devices}
    elif args.tag is not None:
        target = {"tag": args.tag}
    else:
        target = {"all": True}
    body = {"sound": args.sound, "target": target, "interrupt": args.interrupt}
    reply = ctx.client.call("POST", "/api/announce", body=body).body or {}
    ctx.emit(reply, format_announce(reply))
    return 0


def cmd_sounds_list(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.call("GET", "/api/sounds").body or {}
    ctx.emit(reply, format_sounds(reply))
    return 0


def cmd_sounds_upload(ctx: Context, args: argparse.Namespace) -> int:
    try:
        with open(args.file, "rb") as file:
            data = file.read()
    except OSError as error:
        raise CliError(f"cannot read {args.file}: {error.strerror or error}") from None
    path = "/api/sounds/" + urllib.parse.quote(args.name, safe="")
    reply = ctx.client.call("PUT", path, raw=data, content_type=upload_type(args.file))
    verb = "uploaded" if reply.status == 201 else "replaced"
    ctx.emit(reply.body, f"{args.name}: {verb} ({len(data)} bytes)")
    return 0


def cmd_sounds_delete(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.call("DELETE", "/api/sounds/" + urllib.parse.quote(args.name, safe=""))
    ctx.emit(reply.body, f"{args.name}: deleted")
    return 0


def cmd_sounds_assign(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.call("PUT", f"/api/modes/{args.mode}", body={"sound": args.name}).body or {}
    ctx.emit(reply, f"mode {cell(reply.get('mode', args.mode))}: {cell(reply.get('sound', args.name))}")
    return 0


def cmd_forget(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.call("DELETE", device_path(args.device))
    ctx.emit(reply.body, f"{args.device}: forgotten (if it connects again, it is a new device)")
    return 0


def cmd_audit(ctx: Context, args: argparse.Namespace) -> int:
    query: dict[str, str] = {}
    if args.limit is not None:
        query["limit"] = str(args.limit)
    if args.before is not None:
        query["before"] = str(args.before)
    reply = ctx.client.call("GET", "/api/audit", query=query).body or {}
    ctx.emit(reply, format_audit(reply, ctx.now()))
    return 0


def cmd_whoami(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.call("GET", "/api/whoami").body or {}
    ctx.emit(reply, f"{cell(reply.get('who'))} ({cell(reply.get('role'))})")
    return 0


RETRY_STATUSES = frozenset({502, 503, 504})  # a proxy or a restarting server: worth another try


def cmd_tail(ctx: Context, args: argparse.Namespace) -> int:
    """Follow /api/events until Ctrl-C, resuming after the last event seen whenever the stream drops.

    The first connection must succeed (a wrong URL or token should fail at once); after
    that, a dropped stream is retried with a growing pause, as a server restart is expected.
    """
    parser = SseParser()
    if args.last_event_id is not None:
        parser.last_id = str(args.last_event_id)
    connected_once = False
    pause = 0.5
    while True:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if parser.last_id is not None:
            headers["Last-Event-ID"] = parser.last_id
        try:
            response = ctx.client.open(
                "GET", "/api/events", headers=headers, timeout=max(ctx.client.timeout, TAIL_SILENCE)
            )
        except HttpError as error:
            if not connected_once or error.status not in RETRY_STATUSES:
                raise
            reason = str(error)
        except CliError as error:
            if not connected_once:
                raise
            reason = str(error)
        else:
            connected_once, pause = True, 0.5
            reason = follow(ctx, response, parser)
        parser.reset()
        if parser.retry_ms is not None:
            pause = max(pause, parser.retry_ms / 1000)
        resume = f" after event {parser.last_id}" if parser.last_id is not None else ""
        print(f"acp-admin: {reason}; reconnecting{resume} in {pause:g}s", file=ctx.err, flush=True)
        time.sleep(pause)
        pause = min(pause * 2, TAIL_RETRY_MAX)


def follow(ctx: Context, response: http.client.HTTPResponse, parser: SseParser) -> str:
    """Print each event of one connection; return why the connection ended.

    Only reading is guarded: a failed write (the reader of a pipe has gone) is not a
    dropped stream and must end the command, not reconnect.
    """
    with response:
        while True:
            try:
                raw = response.readline()
            except TimeoutError:
                return f"no event or keep-alive for {max(ctx.client.timeout, TAIL_SILENCE):g}s"
            except (OSError, http.client.HTTPException) as error:
                return f"the event stream broke off ({error or type(error).__name__})"
            if not raw:
                return "the server closed the event stream"
            event = parser.feed(raw.decode("utf-8", "replace"))
            if event is not None:
                line = event_json(event) if ctx.as_json else format_event(event, ctx.now())
                print(line, file=ctx.out, flush=True)


# ---------------------------------------------------------------------------------------------
# Arguments


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def page_limit(value: str) -> int:
    number = positive_int(value)
    if number > PAGE_LIMIT:
        raise argparse.ArgumentTypeError(f"at most {PAGE_LIMIT} (use --all for more)")
    return number


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {number}")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """Every command and option; argparse rejects bad usage with exit status 2."""
    parser = argparse.ArgumentParser(
        prog="acp-admin",
        description="Operate the audio control plane through its HTTP API.",
        epilog=f"Environment: ${URL_ENV} (server URL), ${TOKEN_ENV} (bearer token).",
    )
    parser.add_argument(
        "--url", default=None, help=f"the server's admin URL (default ${URL_ENV} or {DEFAULT_URL})"
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file whose first line is the token (TOKEN or NAME:TOKEN); default ${TOKEN_ENV}",
    )
    parser.add_argument("--json", action="store_true", help="print the server's JSON instead of tables")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for a reply (default {DEFAULT_TIMEOUT:g})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="devices as a table")
    state = listing.add_mutually_exclusive_group()
    state.add_argument(
        "--connected", dest="connected", action="store_const", const=True, help="connected only"
    )
    state.add_argument("--offline", dest="connected", action="store_const", const=False, help="offline only")
    listing.add_argument("--tag", help="devices with this tag")
    listing.add_argument("--mode", type=non_negative_int, help="devices in this mode")
    listing.add_argument("--search", metavar="Q", help="a substring of the device id or a tag")
    pages = listing.add_mutually_exclusive_group()
    pages.add_argument(
        "--limit", type=page_limit, help=f"at most N devices (1..{PAGE_LIMIT}; server default 100)"
    )
    pages.add_argument("--all", action="store_true", help="every matching device, page after page")
    listing.set_defaults(run=cmd_list)

    show = commands.add_parser("show", help="one device in full, with its six LED colours")
    show.add_argument("device", metavar="ID")
    show.set_defaults(run=cmd_show)

    mode = commands.add_parser("mode", help="set a device's mode (kept until it reconnects if offline)")
    mode.add_argument("device", metavar="ID")
    mode.add_argument("mode", metavar="N", type=non_negative_int)
    mode.set_defaults(run=cmd_mode)

    play = commands.add_parser("play", help="play on a device, as its Play button does")
    play.add_argument("device", metavar="ID")
    what = play.add_mutually_exclusive_group()
    what.add_argument("--mode", type=non_negative_int, metavar="N", help="the sound of mode N")
    what.add_argument("--sound", metavar="NAME", help="this sound")
    play.set_defaults(run=cmd_play)

    stop = commands.add_parser("stop", help="stop what a device plays")
    stop.add_argument("device", metavar="ID")
    stop.set_defaults(run=cmd_stop)

    tags = commands.add_parser("tags", help="replace a device's tags")
    tags.add_argument("device", metavar="ID")
    tags.add_argument("tags", metavar="TAG", nargs="*")
    tags.add_argument("--clear", action="store_true", help="remove every tag")
    tags.set_defaults(run=cmd_tags)

    forget = commands.add_parser(
        "forget", help="remove an offline device's record: its mode, tags and desired mode"
    )
    forget.add_argument("device", metavar="ID")
    forget.set_defaults(run=cmd_forget)

    announce = commands.add_parser("announce", help="play one sound on many devices")
    announce.add_argument("sound", metavar="SOUND")
    targets = announce.add_mutually_exclusive_group(required=True)
    targets.add_argument("--devices", type=split_devices, metavar="A,B", help="these devices")
    targets.add_argument("--tag", metavar="T", help="devices with this tag")
    targets.add_argument("--all", action="store_true", help="every device")
    announce.add_argument("--interrupt", action="store_true", help="stop what plays instead of skipping it")
    announce.set_defaults(run=cmd_announce)

    sounds = commands.add_parser("sounds", help="the sound library and mode assignments")
    sound_commands = sounds.add_subparsers(dest="sounds_command", required=True, metavar="ACTION")
    sound_commands.add_parser("list", help="sounds and which mode plays which").set_defaults(
        run=cmd_sounds_list
    )
    upload = sound_commands.add_parser("upload", help="upload (or replace) a sound file")
    upload.add_argument("name", metavar="NAME")
    upload.add_argument("file", metavar="FILE")
    upload.set_defaults(run=cmd_sounds_upload)
    delete = sound_commands.add_parser("delete", help="delete an uploaded sound")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(run=cmd_sounds_delete)
    assign = sound_commands.add_parser("assign", help="make a mode play a sound")
    assign.add_argument("mode", metavar="MODE", type=non_negative_int)
    assign.add_argument("name", metavar="NAME")
    assign.set_defaults(run=cmd_sounds_assign)

    audit = commands.add_parser("audit", help="recent actions, newest first")
    audit.add_argument("--limit", type=positive_int, help="at most N entries")
    audit.add_argument("--before", type=non_negative_int, metavar="ID", help="entries older than this id")
    audit.set_defaults(run=cmd_audit)

    commands.add_parser("whoami", help="who the server takes you for (checks a token)").set_defaults(
        run=cmd_whoami
    )

    tail = commands.add_parser("tail", help="follow live events until Ctrl-C")
    tail.add_argument("--last-event-id", type=non_negative_int, metavar="N", help="resume after event N")
    tail.set_defaults(run=cmd_tail)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parsed arguments, with the checks argparse cannot express (exit 2 like its own)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "tags" and args.clear == bool(args.tags):
        parser.error("tags: give the new tags, or --clear to remove them all")
    args.url = (args.url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    scheme = urllib.parse.urlsplit(args.url).scheme
    if scheme not in ("http", "https"):
        parser.error(f"--url must start with http:// or https://, not {args.url!r}")
    return args


def resolve_token(token_file: str | None) -> str | None:
    """The token from --token-file, else $ACP_ADMIN_TOKEN, else none."""
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as file:
                return read_token(file.read())
        except OSError as error:
            raise CliError(f"cannot read the token file {token_file}: {error.strerror or error}") from None
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: 0 done, 1 the server refused or could not be reached, 2 bad usage."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    out, err = sys.stdout, sys.stderr
    try:
        client = Client(base_url=args.url, token=resolve_token(args.token_file), timeout=args.timeout)
        run: Callable[[Context, argparse.Namespace], int] = args.run
        return run(Context(client, args.json, out, err, utc_now), args)
    except CliError as error:
        print(f"error: {error}", file=err)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C is how tail is meant to end; anything else it cut short did not finish.
        return 0 if args.command == "tail" else 130
    except BrokenPipeError:
        # The reader (| head) has gone: stop quietly, and keep Python's flush at exit from
        # complaining about the same pipe.
        with contextlib.suppress(OSError, ValueError):  # not a real file (a test's capture)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
