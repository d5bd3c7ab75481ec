"""Who may use the operator API, and what a web page the operator visits cannot make it do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from admin.access import (
    AccessPolicy,
    Caller,
    HostPort,
    Role,
    TokenFileError,
    Tokens,
    parse_host,
    read_token_file,
)
from media.library import SoundLibrary
from tests.admin_live import JSON, operated
from tests.live import run

OPERATOR_TOKEN = "operator-secret-0123456789"
READONLY_TOKEN = "readonly-secret-0123456789"


def token_files(tmp_path: Path) -> dict[str, Any]:
    operator, readonly = tmp_path / "operator.tokens", tmp_path / "readonly.tokens"
    operator.write_text(f"# operators\nalice:{OPERATOR_TOKEN}\n")
    readonly.write_text(f"{READONLY_TOKEN}\n")
    return {"admin_token_file": operator, "admin_readonly_token_file": readonly}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_file_names_its_tokens_or_names_them_by_digest(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{OPERATOR_TOKEN}\n\n{READONLY_TOKEN}\n")
    pairs = read_token_file(path, Role.READONLY)
    assert pairs[0] == (OPERATOR_TOKEN, Caller("alice", Role.READONLY))
    assert pairs[1][1].who.startswith("readonly-")
    assert len(pairs[1][1].who) == len("readonly-") + 8


def test_an_empty_or_short_token_file_is_refused_naming_it(tmp_path: Path) -> None:
    empty, short = tmp_path / "empty", tmp_path / "short"
    empty.write_text("\n# nothing\n")
    short.write_text("abc\n")
    with pytest.raises(TokenFileError, match="holds no token"):
        read_token_file(empty, Role.OPERATOR)
    with pytest.raises(TokenFileError, match="shorter than 16"):
        read_token_file(short, Role.OPERATOR)
    with pytest.raises(TokenFileError, match="missing"):
        read_token_file(tmp_path / "missing", Role.OPERATOR)


def test_only_a_configured_token_finds_a_caller() -> None:
    tokens = Tokens([(OPERATOR_TOKEN, Caller("alice", Role.OPERATOR))])
    assert tokens.caller(OPERATOR_TOKEN) == Caller("alice", Role.OPERATOR)
    assert tokens.caller(OPERATOR_TOKEN[:-1]) is None
    assert tokens.caller("") is None


def test_the_listener_answers_to_its_own_names_and_the_configured_ones() -> None:
    policy = AccessPolicy.for_listener(Tokens(), "10.0.0.5", ["acp.example.com"], ["https://ops.example.com"])
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "10.0.0.5:8080", "ACP.example.com"):
        assert policy.host_allowed(host), host
    for host in ("evil.example.com", "", "127.0.0.1.evil.com:8080"):
        assert not policy.host_allowed(host), host
    assert policy.origin_allowed("http://localhost:8080", "localhost:8080")
    assert policy.origin_allowed("https://ops.example.com", "localhost:8080")
    assert not policy.origin_allowed("https://evil.example.com", "localhost:8080")
    assert not policy.origin_allowed("null", "localhost:8080")


def test_a_host_is_a_name_or_a_bracketed_ipv6_address_with_at_most_a_port() -> None:
    policy = AccessPolicy.for_listener(Tokens(), "127.0.0.1", [], [])
    for host in ("[::1]evil.example", "[::1]:8080evil", "::1", "localhost:", "localhost:99999", "[::1"):
        assert not policy.host_allowed(host), host
    assert parse_host("[::1]:8080") == HostPort("::1", 8080)
    assert parse_host("LocalHost") == HostPort("localhost", None)
    assert parse_host("localhost:8080/evil") is None


def test_an_origin_is_compared_with_the_requests_own_host_port_included() -> None:
    policy = AccessPolicy.for_listener(Tokens(), "127.0.0.1", [], ["https://ops.example.com"])
    assert policy.origin_allowed("http://localhost:8080", "localhost:8080")
    assert not policy.origin_allowed("http://localhost:9999", "localhost:8080"), "another port"
    assert not policy.origin_allowed("http://127.0.0.1:8080", "localhost:8080"), "another name"
    assert policy.origin_allowed("http://localhost", "localhost"), "the scheme's default port"
    assert not policy.origin_allowed("http://localhost:81", "localhost")
    assert policy.origin_allowed("https://ops.example.com:443/", "localhost:8080"), "configured"
    assert not policy.origin_allowed("https://ops.example.com:8443", "localhost:8080")


def test_without_a_token_file_the_api_listens_on_loopback_only(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, host="0.0.0.0") as op:
            assert op.plane.config.admin_host == "127.0.0.1"
            assert (await op.http.get("/api/whoami")).json() == {"who": "local", "role": "operator"}

    run(scenario)


def test_with_a_token_file_every_api_request_needs_a_valid_token(
    library: SoundLibrary, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with operated(library, **token_files(tmp_path)) as op:
            missing = await op.http.get("/api/devices")
            assert missing.status_code == 401
            assert "Bearer" in missing.json()["detail"]
            assert missing.headers["www-authenticate"].startswith("Bearer")
            wrong = await op.http.get("/api/devices", headers=bearer("not-the-token-at-all"))
            assert wrong.status_code == 401
            right = await op.http.get("/api/whoami", headers=bearer(OPERATOR_TOKEN))
            assert right.json() == {"who": "alice", "role": "operator"}
            page = await op.http.get("/", headers={})
            assert page.status_code == 200  # the dashboard itself asks for the token

    run(scenario)


def test_a_readonly_token_may_read_but_not_act(library: SoundLibrary, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with operated(library, **token_files(tmp_path)) as op:
            reader = bearer(READONLY_TOKEN)
            assert (await op.http.get("/api/devices", headers=reader)).status_code == 200
            acting = await op.http.post("/api/announce", json={}, headers=reader)
            assert acting.status_code == 403
            assert "read-only" in acting.json()["detail"]
            deleting = await op.http.delete("/api/sounds/builtin-0", headers=reader)
            assert deleting.status_code == 403

    run(scenario)


def test_actions_refuse_the_content_types_a_cross_site_form_can_send(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            for content_type in (
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ):
                response = await op.http.post(
                    "/api/devices/a/stop", content=b"{}", headers={"Content-Type": content_type}
                )
                assert response.status_code == 415, content_type
                upload = await op.http.put(
                    "/api/sounds/x", content=b"x", headers={"Content-Type": content_type}
                )
                assert upload.status_code == 415, content_type
            bare = await op.http.post("/api/devices/a/stop")
            assert bare.status_code == 415
            assert "application/json" in bare.json()["detail"]

    run(scenario)


def test_an_action_from_a_foreign_origin_is_403(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            foreign = await op.http.post(
                "/api/devices/a/stop", json={}, headers={**JSON, "Origin": "https://evil.example.com"}
            )
            assert foreign.status_code == 403
            assert "evil.example.com" in foreign.json()["detail"]
            own = await op.http.post("/api/devices/a/stop", json={}, headers={"Origin": op.url})
            assert own.status_code == 404  # past the guard: the device is unknown

    run(scenario)


def test_a_foreign_host_header_is_403(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            rebound = await op.http.get("/api/devices", headers={"Host": "attacker.example.com"})
            assert rebound.status_code == 403
            page = await op.http.get("/", headers={"Host": "attacker.example.com:8080"})
            assert page.status_code == 403

    run(scenario)


def test_a_proxy_name_can_be_allowed(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library, admin_allowed_hosts="acp.example.com") as op:
            proxied = await op.http.get("/api/devices", headers={"Host": "acp.example.com"})
            assert proxied.status_code == 200

    run(scenario)


def test_a_cors_preflight_is_refused_and_no_cors_header_is_sent(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            preflight = await op.http.options(
                "/api/devices/a/mode",
                headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
            )
            assert preflight.status_code == 403
            listing = await op.http.get("/api/devices", headers={"Origin": "https://evil.example.com"})
            assert not any(name.lower().startswith("access-control-") for name in listing.headers)

    run(scenario)


def test_a_read_only_token_file_alone_is_a_configuration_error() -> None:
    from actors.config import ServerConfig

    with pytest.raises(ValueError, match="needs --admin-token-file"):
        ServerConfig(admin_readonly_token_file=Path("x"))


def test_an_action_from_the_same_host_on_another_port_is_403(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            assert op.plane.admin_port is not None
            other_port = op.plane.admin_port % 65535 + 1
            response = await op.http.post(
                "/api/devices/a/stop", json={}, headers={"Origin": f"http://127.0.0.1:{other_port}"}
            )
            assert response.status_code == 403
            assert f":{other_port}" in response.json()["detail"]

    run(scenario)


async def raw_request(port: int, request: bytes) -> bytes:
    """Sends ``request`` as it is (headers an HTTP client would not send) and reads the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(65536)
    finally:
        writer.close()


def test_a_request_with_two_host_headers_is_400_naming_why(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            assert op.plane.admin_port is not None
            reply = await raw_request(
                op.plane.admin_port,
                b"GET /api/devices HTTP/1.1\r\nHost: evil.example\r\nHost: localhost\r\n\r\n",
            )
            status, _, rest = reply.partition(b"\r\n")
            assert status.startswith(b"HTTP/1.1 400"), reply
            assert b"more than one Host header" in rest
            assert b"evil.example" not in rest, "no redirect to the other host"

    run(scenario)


def test_a_host_with_text_after_the_ipv6_address_is_403(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            response = await op.http.get("/api/devices", headers={"Host": "[::1]evil.example"})
            assert response.status_code == 403

    run(scenario)
