"""The operator API and the dashboard, as one ASGI app (FastAPI) behind the access guard.

Handlers are thin: reads come from the fleet view, actions go through ``FleetCommands`` to
the supervisor (so they are decided exactly as button presses are), and every action is
written to the audit log. Listings are encoded straight from the view's cached JSON.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp

from actors.messages import CommandOutcome, CommandResult, RemovalOutcome
from actors.state import Command, PlaySound, SetMode, StopSound
from actors.store import StateStore
from admin.access import AccessGuard, AccessPolicy, Caller, caller_of
from admin.audit import AuditEntry, AuditLog, recorded_devices
from admin.commands import FleetCommands
from admin.events import EventHub
from admin.fleetview import DeviceFilter, FleetView, iso_time
from media.catalog import (
    AssignmentError,
    SoundCatalog,
    SoundConflict,
    SoundNameError,
    UnknownSound,
)
from media.decode import SoundFileError
from media.library import MAX_MODES
from media.sandbox import DecodeBusy

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
Tag = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
SoundName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

MAX_ID = 2**63 - 1
"""The largest id (an event's, an audit entry's) a request may name: SQLite's largest integer."""
MAX_MODE = MAX_MODES - 1
EVENT_ID = re.compile(r"[0-9]{1,19}")
"""A Last-Event-ID: ASCII digits only (``str.isdigit`` takes "²" too), at most MAX_ID's 19."""

MAX_ERRORS_SHOWN = 20
"""A 422 names at most this many errors (and says how many more there were)."""

REFUSED_RETRY_SECONDS = 3
"""Retry-After of a refused play: the busy notice on the device lasts as long."""

MAX_UPLOADS_READING = 4
"""Uploads in progress at once (two decode, two wait their turn): with the upload limit, this
bounds the memory uploads can hold, whoever holds a token."""
"""Retry-After of a refused play: the busy notice on the device lasts as long."""


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


class _Body(BaseModel):
    """A JSON body. A mistake costs one error, however often it is repeated: an error is built,
    kept and encoded for each bad key or item, and a 1 MB body of 100,000 of them took the event
    loop 0.6 s and made a 14 MB reply."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [key for key in data if key not in cls.model_fields]
            if unknown:
                raise ValueError(
                    f"unknown fields: {_some(unknown)} (the fields are {', '.join(cls.model_fields)})"
                )
        return data


class ModeBody(_Body):
    mode: int = Field(ge=0, le=MAX_MODE, description="The mode to set, 0..modes-1.")


class PlayBody(_Body):
    mode: int | None = Field(
        default=None, ge=0, le=MAX_MODE, description="Play this mode's sound instead of the current one's."
    )
    sound: SoundName | None = Field(default=None, description="Play this sound by name.")

    @model_validator(mode="after")
    def _one_choice(self) -> PlayBody:
        if self.mode is not None and self.sound is not None:
            raise ValueError("give a mode or a sound, not both")
        return self


class StopBody(_Body):
    pass


class TagsBody(_Body):
    tags: list[Tag] = Field(max_length=32, description="The device's tags, replacing the old ones.")


class AnnounceTarget(_Body):
    devices: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | None = Field(
        default=None, min_length=1, max_length=100_000
    )
    tag: Tag | None = None
    all: bool | None = None

    @field_validator("devices", mode="before")
    @classmethod
    def _device_ids(cls, devices: Any) -> Any:
        if isinstance(devices, list):
            bad = [
                n
                for n, device in enumerate(devices)
                if not isinstance(device, str) or not 1 <= len(device) <= 256
            ]
            if bad:
                raise ValueError(f"devices {_some(bad)}: a device id is a string of 1 to 256 characters")
        return devices

    @model_validator(mode="after")
    def _exactly_one(self) -> AnnounceTarget:
        given = [self.devices is not None, self.tag is not None, self.all is True]
        if sum(given) != 1:
            raise ValueError('give exactly one of "devices", "tag" or "all": true')
        return self


class AnnounceBody(_Body):
    sound: SoundName
    target: AnnounceTarget
    interrupt: bool = False


class AssignBody(_Body):
    sound: SoundName


class Playing(BaseModel):
    sound: str | None
    mode: int
    since: str | None


class Device(BaseModel):
    device_id: str
    connected: bool
    mode: int
    desired_mode: int | None
    status: str
    playing: Playing | None
    leds: list[str]
    last_seen: str | None
    connected_since: str | None
    peer: str | None
    tags: list[str]
    replica: str | None = Field(
        description="The server holding the device's streams while it is connected (replicas sharing a store)"
    )


class DeviceList(BaseModel):
    devices: list[Device]
    total: int
    next: str | None
    event_id: int


class ActionReply(BaseModel):
    result: str
    device: Device | None


class AnnounceReply(BaseModel):
    announcement: int
    sound: str
    results: dict[str, str]
    counts: dict[str, int]


class SoundInfo(BaseModel):
    name: str
    source: str
    duration: float
    modes: list[int]


class ModeSound(BaseModel):
    mode: int
    sound: str


class SoundList(BaseModel):
    sounds: list[SoundInfo]
    modes: list[ModeSound]


class ModeList(BaseModel):
    modes: list[ModeSound]


class AuditItem(BaseModel):
    id: int
    at: str | None
    who: str
    role: str
    action: str
    target: str
    devices: list[str]
    result: dict[str, Any]


class AuditList(BaseModel):
    entries: list[AuditItem]
    next: int | None


class WhoAmI(BaseModel):
    who: str
    role: str


class ErrorReply(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str
    message: str


class ValidationReply(BaseModel):
    """Every 422: what was wrong in one line, and each bad field."""

    detail: str
    errors: list[FieldError] = []


ANNOUNCE_RESULTS = ("started", "offline", "busy", "refused", "failed")

_ANNOUNCE_RESULT = {
    CommandOutcome.STARTED: "started",
    CommandOutcome.OFFLINE: "offline",
    CommandOutcome.UNKNOWN: "offline",
    CommandOutcome.BUSY: "busy",
    CommandOutcome.REFUSED: "refused",
    CommandOutcome.INVALID: "refused",
    CommandOutcome.FAILED: "failed",
}


@dataclass
class OperatorSurface:
    """What the API works on; built and owned by the control plane."""

    fleet: FleetView
    hub: EventHub
    commands: FleetCommands
    store: StateStore
    audit: AuditLog
    sounds: SoundCatalog
    clock: Callable[[], float]
    max_upload_bytes: int


def create_app(surface: OperatorSurface, policy: AccessPolicy) -> ASGIApp:
    """The FastAPI app wrapped in the access guard."""
    api = FastAPI(
        title="Audio control plane: operator API",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses={
            401: {"model": ErrorReply, "description": "missing or wrong token"},
            403: {"model": ErrorReply, "description": "read-only token, foreign Origin or Host"},
            400: {"model": ErrorReply, "description": "more than one Host header"},
            413: {"model": ErrorReply, "description": "a JSON body larger than --admin-max-json-mb"},
            415: {"model": ErrorReply, "description": "not application/json (or a form content type)"},
        },
    )
    fleet, hub, commands, audit, sounds = (
        surface.fleet,
        surface.hub,
        surface.commands,
        surface.audit,
        surface.sounds,
    )
    announcements = itertools.count(1)
    uploads_reading = [0]
    """Uploads whose bodies are being read or decoded now (a list: the handlers share it)."""

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> Response:
        return JSONResponse({"detail": error.detail}, error.status, headers=error.headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        found = error.errors()
        errors = [
            {
                "field": ".".join(str(part) for part in item.get("loc", ())),
                "message": str(item.get("msg", "")),
            }
            for item in found[:MAX_ERRORS_SHOWN]
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        if len(found) > MAX_ERRORS_SHOWN:
            detail += f"; and {len(found) - MAX_ERRORS_SHOWN} more"
        return JSONResponse({"detail": detail or "invalid request", "errors": errors}, 422)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
        detail = error.detail if isinstance(error.detail, str) else "error"
        if error.status_code == 400:  # FastAPI could not read the body (not UTF-8, say)
            return JSONResponse({"detail": f"body: not valid JSON ({detail})", "errors": []}, 422)
        if error.status_code == 404 and detail == "Not Found":
            detail = f"no such route: {request.method} {request.url.path}"
        return JSONResponse({"detail": detail}, error.status_code, headers=error.headers)

    def record(caller: Caller, action: str, target: str, devices: list[str], result: dict[str, Any]) -> None:
        try:
            audit.record(
                AuditEntry(
                    surface.clock(),
                    caller.who,
                    caller.role.value,
                    action,
                    target,
                    recorded_devices(devices),
                    result,
                )
            )
        except Exception as error:  # the action happened; losing its record must not undo it
            logger.error("could not write the audit log: %s", error)

    def known(device_id: str) -> None:
        if device_id not in fleet:
            raise ApiError(404, f"device {device_id!r} has never connected to this server")

    def check_mode(mode: int, field: str) -> None:
        modes = sounds.modes
        if not 0 <= mode < modes:
            raise ApiError(422, f"{field}: mode {mode} does not exist; modes are 0..{modes - 1}")

    async def act(
        caller: Caller, device_id: str, action: str, command: Command, detail: dict[str, Any]
    ) -> Response:
        known(device_id)
        result = await commands.send(device_id, command, caller)
        record(caller, action, device_id, [device_id], {**detail, "result": result.outcome.value})
        return _action_reply(device_id, result, fleet.device(device_id))

    @api.get("/api/whoami", response_model=WhoAmI, tags=["access"])
    async def whoami(request: Request) -> WhoAmI:
        caller = caller_of(request.state)
        return WhoAmI(who=caller.who, role=caller.role.value)

    @api.get("/api/devices", response_model=DeviceList, tags=["devices"])
    async def list_devices(
        connected: bool | None = None,
        tag: Annotated[str | None, Query(max_length=64)] = None,
        mode: Annotated[int | None, Query(ge=0, le=MAX_MODE)] = None,
        q: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(max_length=256)] = None,
    ) -> Response:
        event_id = hub.last_id
        page = fleet.page(DeviceFilter(connected, tag, mode, q), limit, after)
        body = {"devices": page.devices, "total": page.total, "next": page.next, "event_id": event_id}
        return Response(json.dumps(body), media_type="application/json")

    @api.get(
        "/api/devices/{device_id:path}",
        response_model=Device,
        responses={404: {"model": ErrorReply}},
        tags=["devices"],
    )
    async def get_device(device_id: str) -> Response:
        device = fleet.device(device_id)
        if device is None:
            raise ApiError(404, f"device {device_id!r} has never connected to this server")
        return JSONResponse(device)

    @api.delete(
        "/api/devices/{device_id:path}",
        status_code=204,
        responses={
            404: {"model": ErrorReply, "description": "never seen"},
            409: {"model": ErrorReply, "description": "connected"},
            503: {"model": ErrorReply, "description": "no answer in time"},
        },
        tags=["devices"],
    )
    async def remove_device(device_id: str, request: Request) -> Response:
        known(device_id)
        holder = fleet.held_elsewhere(device_id)
        if fleet.connected(device_id):
            where = f" to {holder}" if holder else ""
            raise ApiError(
                409, f"device {device_id!r} is connected{where}; only an offline device is removed"
            )
        outcome = await commands.remove(device_id)
        result = "failed" if outcome is None else outcome.value
        record(caller_of(request.state), "device.remove", device_id, [device_id], {"result": result})
        if outcome is RemovalOutcome.REMOVED:
            logger.info("device %s removed by %s", device_id, caller_of(request.state).who)
            return Response(status_code=204)
        if outcome is None:
            raise ApiError(503, f"device {device_id!r}: the server did not answer in time; retry")
        if outcome is RemovalOutcome.FAILED:
            raise ApiError(503, f"device {device_id!r}: the store failed to remove its record; retry")
        raise ApiError(
            409,
            f"device {device_id!r} connected again, or another server holds it; only an offline device"
            " is removed",
        )

    action_errors: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorReply, "description": "never seen"},
        409: {"model": ErrorReply, "description": "offline"},
        422: {"model": ErrorReply, "description": "bad field"},
        503: {"model": ErrorReply, "description": "refused by admission control, or no answer"},
    }

    @api.post(
        "/api/devices/{device_id:path}/mode",
        response_model=ActionReply,
        responses=action_errors,
        tags=["actions"],
    )
    async def set_mode(device_id: str, body: ModeBody, request: Request) -> Response:
        check_mode(body.mode, "body.mode")
        return await act(caller_of(request.state), device_id, "mode", SetMode(body.mode), {"mode": body.mode})

    @api.post(
        "/api/devices/{device_id:path}/play",
        response_model=ActionReply,
        responses=action_errors,
        tags=["actions"],
    )
    async def play(device_id: str, request: Request, body: PlayBody | None = None) -> Response:
        body = body or PlayBody()
        if body.mode is not None:
            check_mode(body.mode, "body.mode")
        if body.sound is not None and sounds.named(body.sound) is None:
            raise ApiError(422, f"body.sound: no sound is named {body.sound!r}")
        command = PlaySound(sound=body.sound, mode=body.mode)
        detail = {
            key: value for key, value in (("mode", body.mode), ("sound", body.sound)) if value is not None
        }
        return await act(caller_of(request.state), device_id, "play", command, detail)

    @api.post(
        "/api/devices/{device_id:path}/stop",
        response_model=ActionReply,
        responses=action_errors,
        tags=["actions"],
    )
    async def stop(device_id: str, request: Request, body: StopBody | None = None) -> Response:
        return await act(caller_of(request.state), device_id, "stop", StopSound(), {})

    @api.put(
        "/api/devices/{device_id:path}/tags",
        response_model=ActionReply,
        responses=action_errors,
        tags=["actions"],
    )
    async def set_tags(device_id: str, body: TagsBody, request: Request) -> Response:
        known(device_id)
        tags = tuple(dict.fromkeys(body.tags))
        surface.store.save_tags(device_id, tags)
        fleet.tags_set(device_id, tags)
        record(caller_of(request.state), "tags", device_id, [device_id], {"tags": list(tags)})
        return JSONResponse({"result": "applied", "device": fleet.device(device_id)})

    @api.post(
        "/api/announce",
        response_model=AnnounceReply,
        responses={422: {"model": ErrorReply}},
        tags=["actions"],
    )
    async def announce(body: AnnounceBody, request: Request) -> Response:
        if sounds.named(body.sound) is None:
            raise ApiError(422, f"body.sound: no sound is named {body.sound!r}")
        target = body.target
        if target.devices is not None:
            wanted = list(dict.fromkeys(target.devices))
            where = "devices"
        elif target.tag is not None:
            wanted = fleet.select(DeviceFilter(tag=target.tag))
            where = f"tag {target.tag}"
        else:
            wanted = fleet.select(DeviceFilter())
            where = "all"
        online = [device_id for device_id in wanted if fleet.connected(device_id)]
        command = PlaySound(sound=body.sound, interrupt=body.interrupt)
        answers = await commands.send_many(online, lambda _: command, caller_of(request.state))
        results = {device_id: "offline" for device_id in wanted}
        results.update(
            {device_id: _ANNOUNCE_RESULT.get(r.outcome, "failed") for device_id, r in answers.items()}
        )
        counts = {name: 0 for name in ANNOUNCE_RESULTS}
        for outcome in results.values():
            counts[outcome] += 1
        number = next(announcements)
        summary = {
            "announcement": number,
            "sound": body.sound,
            "target": where,
            "interrupt": body.interrupt,
            "counts": counts,
        }
        hub.publish("announcement", f"announcement:{number}", summary)
        record(caller_of(request.state), "announce", where, wanted, summary)
        logger.info("announcement %d of %s to %s: %s", number, body.sound, where, counts)
        return JSONResponse(
            {"announcement": number, "sound": body.sound, "results": results, "counts": counts}
        )

    def sound_listing() -> dict[str, Any]:
        return {
            "sounds": [
                {
                    "name": e.name,
                    "source": e.source.value,
                    "duration": round(e.duration, 3),
                    "modes": list(e.modes),
                }
                for e in sounds.entries()
            ],
            "modes": [{"mode": mode, "sound": name} for mode, name in sorted(sounds.assignments().items())],
        }

    def sounds_changed() -> None:
        hub.publish("sounds", "sounds", sound_listing())

    @api.get("/api/sounds", response_model=SoundList, tags=["sounds"])
    async def list_sounds() -> Response:
        return JSONResponse(sound_listing())

    @api.put(
        "/api/sounds/{name}",
        response_model=SoundInfo,
        status_code=201,
        responses={
            200: {"model": SoundInfo, "description": "replaced"},
            409: {"model": ErrorReply},
            413: {"model": ErrorReply},
            422: {"model": ErrorReply},
            503: {"model": ErrorReply, "description": "every decoder busy, or stopping (Retry-After)"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
        tags=["sounds"],
    )
    async def put_sound(
        name: str, request: Request, content_length: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None
    ) -> Response:
        limit = surface.max_upload_bytes
        if content_length is not None and content_length > limit:
            raise ApiError(413, f"the sound file is larger than the limit of {_megabytes(limit)}")
        if uploads_reading[0] >= MAX_UPLOADS_READING:
            # Refused before a byte is read: the memory uploads hold is bounded by this times the limit.
            raise ApiError(
                503,
                f"{MAX_UPLOADS_READING} uploads are already in progress; retry later",
                headers={"Retry-After": str(REFUSED_RETRY_SECONDS)},
            )
        uploads_reading[0] += 1
        try:
            data = bytearray()
            try:
                async for chunk in request.stream():
                    data.extend(chunk)
                    if len(data) > limit:
                        raise ApiError(413, f"the sound file is larger than the limit of {_megabytes(limit)}")
            except ClientDisconnect:  # gone, or closed for pausing too long: nobody reads an answer
                return Response(status_code=400)
            if not data:
                raise ApiError(422, "body: the request body must be the sound file; it was empty")
            payload = bytes(data)
            del data  # one copy of the file held, not two
            return await store_upload(name, payload, caller_of(request.state))
        finally:
            uploads_reading[0] -= 1

    async def store_upload(name: str, data: bytes, caller: Caller) -> Response:
        try:
            sounds.check_upload_name(name)
            sound = await sounds.decode(name, data)  # in a child process, limited
            created = await asyncio.to_thread(sounds.add, name, sound, data)  # writes the files
        except SoundNameError as error:
            raise ApiError(422, f"name: {error}") from None
        except SoundConflict as error:
            raise ApiError(409, str(error)) from None
        except SoundFileError as error:
            raise ApiError(422, f"body: {error}") from None
        except DecodeBusy as error:
            raise ApiError(503, str(error), headers={"Retry-After": str(error.retry_after)}) from None
        except OSError as error:
            raise ApiError(507, f"the sound could not be stored: {error.strerror}") from None
        info = {
            "name": name,
            "source": "uploaded",
            "duration": round(sound.duration, 3),
            "modes": sounds.modes_of(name),
        }
        record(
            caller,
            "sound.put",
            name,
            [],
            {"created": created, "bytes": len(data), "duration": info["duration"]},
        )
        sounds_changed()
        logger.info(
            "sound %s %s by %s (%.1f s)",
            name,
            "uploaded" if created else "replaced",
            caller.who,
            sound.duration,
        )
        return JSONResponse(info, 201 if created else 200)

    @api.delete(
        "/api/sounds/{name}",
        status_code=204,
        responses={404: {"model": ErrorReply}, 409: {"model": ErrorReply}},
        tags=["sounds"],
    )
    async def delete_sound(name: str, request: Request) -> Response:
        try:
            sounds.remove(name)
        except UnknownSound:
            raise ApiError(404, f"no sound is named {name!r}") from None
        except SoundConflict as error:
            raise ApiError(409, str(error)) from None
        except OSError as error:
            raise ApiError(507, f"the sound could not be deleted from disk: {error.strerror}") from None
        record(caller_of(request.state), "sound.delete", name, [], {"result": "deleted"})
        sounds_changed()
        return Response(status_code=204)

    @api.get("/api/modes", response_model=ModeList, tags=["sounds"])
    async def list_modes() -> Response:
        return JSONResponse({"modes": sound_listing()["modes"]})

    @api.put(
        "/api/modes/{mode}", response_model=ModeSound, responses={422: {"model": ErrorReply}}, tags=["sounds"]
    )
    async def assign(
        mode: Annotated[int, PathParameter(ge=0, le=MAX_MODE)], body: AssignBody, request: Request
    ) -> Response:
        check_mode(mode, "mode")
        if sounds.named(body.sound) is None:
            raise ApiError(422, f"body.sound: no sound is named {body.sound!r}")
        try:
            sounds.assign(mode, body.sound)
        except AssignmentError as error:
            raise ApiError(422, str(error)) from None
        except OSError as error:
            raise ApiError(507, f"the assignment could not be stored: {error.strerror}") from None
        record(caller_of(request.state), "mode.assign", str(mode), [], {"mode": mode, "sound": body.sound})
        sounds_changed()
        return JSONResponse({"mode": mode, "sound": body.sound})

    @api.get(
        "/api/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
        tags=["events"],
    )
    async def events(
        last_event_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> Response:
        resume = last_event_id
        if resume is None and last_event_id_header:
            text = last_event_id_header.strip()
            if EVENT_ID.fullmatch(text) is None or int(text) > MAX_ID:
                shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
                raise ApiError(422, f"Last-Event-ID: {shown!r} is not an event id")
            resume = int(text)
        reader = hub.join(resume)
        return StreamingResponse(
            reader.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.get("/api/audit", response_model=AuditList, tags=["audit"])
    async def audit_log(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    ) -> Response:
        entries = await audit.entries(limit + 1, before)
        next_id = entries[limit - 1].id if len(entries) > limit else None
        entries = entries[:limit]
        return JSONResponse({"entries": [entry.to_json(iso_time) for entry in entries], "next": next_id})

    @api.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    api.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    _document_validation_errors(api)
    return AccessGuard(api, policy)


def _document_validation_errors(api: FastAPI) -> None:
    """FastAPI documents every 422 as its own HTTPValidationError; ours is ``ValidationReply``."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            reply = ValidationReply.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, schema in reply.pop("$defs", {}).items():
                schemas[name] = schema
            schemas["HTTPValidationError"] = reply
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


_STATUS = {
    CommandOutcome.APPLIED: 200,
    CommandOutcome.STARTED: 200,
    CommandOutcome.STOPPED: 200,
    CommandOutcome.IDLE: 200,
    CommandOutcome.DESIRED: 202,
}


def _action_reply(device_id: str, result: CommandResult, device: dict[str, Any] | None) -> Response:
    outcome = result.outcome
    status = _STATUS.get(outcome)
    if status is not None:
        return JSONResponse({"result": outcome.value, "device": device}, status)
    match outcome:
        case CommandOutcome.UNKNOWN:
            raise ApiError(404, f"device {device_id!r} has never connected to this server")
        case CommandOutcome.OFFLINE:
            raise ApiError(409, f"device {device_id!r} is offline; play and stop need it connected")
        case CommandOutcome.BUSY:
            raise ApiError(409, f"device {device_id!r} is playing and the command was not to interrupt it")
        case CommandOutcome.REFUSED:
            raise ApiError(
                503,
                "refused: the server streams all the audio it can keep on time; retry later",
                {"Retry-After": str(REFUSED_RETRY_SECONDS)},
            )
        case CommandOutcome.INVALID:
            raise ApiError(422, "the command does not fit the device (its mode or sound no longer exists)")
        case _:
            raise ApiError(
                503, f"device {device_id!r} did not answer in time, or its new state could not be saved"
            )


def _some(items: list[Any], shown: int = 5) -> str:
    """The first few, and how many more: an error message stays short however many there are."""
    text = ", ".join(repr(item) if isinstance(item, str) else str(item) for item in items[:shown])
    return text if len(items) <= shown else f"{text} and {len(items) - shown} more"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:g} MB"
