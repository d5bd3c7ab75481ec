"""Optional TLS, mutual TLS and per-device tokens; plaintext stays the default for today's devices."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors.config import ServerConfig
from media.library import SoundLibrary
from rpc.auth import TOKEN_KEY, load_secret, token_for
from rpc.auth import main as mint_token
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.live import run, serving, target


def pem_pair(
    name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName(name)]), critical=False
        )
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return certificate, key


def write(path: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = pem_pair("test CA", None)
    server_cert, server_key = write(tmp_path / "server", *pem_pair("localhost", ca))
    device_cert, device_key = write(tmp_path / "device", *pem_pair("kitchen", ca))
    ca_cert, _ = write(tmp_path / "ca", *ca)
    return {
        "ca": ca_cert,
        "server_cert": server_cert,
        "server_key": server_key,
        "device_cert": device_cert,
        "device_key": device_key,
    }


def tls_device(plane: ControlPlane, pki: dict[str, Path], with_client_cert: bool) -> SimulatedDevice:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=pki["device_key"].read_bytes() if with_client_cert else None,
        certificate_chain=pki["device_cert"].read_bytes() if with_client_cert else None,
    )
    return SimulatedDevice(
        f"localhost:{plane.port}",
        "kitchen",
        play_in_real_time=False,
        credentials=credentials,
        connect_timeout=3,
    )


def test_a_device_speaks_tls_to_a_server_with_a_certificate(
    library: SoundLibrary, pki: dict[str, Path]
) -> None:
    async def scenario() -> None:
        async with serving(library, tls_cert=pki["server_cert"], tls_key=pki["server_key"]) as plane:
            async with tls_device(plane, pki, with_client_cert=False) as device:
                assert await device.press(Button.MODE)
            with pytest.raises(ConnectionError):
                await SimulatedDevice(target(plane), "plain", connect_timeout=1).connect()

    run(scenario)


def test_mutual_tls_refuses_a_device_without_a_client_certificate(
    library: SoundLibrary, pki: dict[str, Path]
) -> None:
    async def scenario() -> None:
        tls = {"tls_cert": pki["server_cert"], "tls_key": pki["server_key"], "tls_client_ca": pki["ca"]}
        async with serving(library, **tls) as plane:
            async with tls_device(plane, pki, with_client_cert=True) as device:
                assert await device.press(Button.MODE)
            with pytest.raises(ConnectionError):
                await tls_device(plane, pki, with_client_cert=False).connect()

    run(scenario)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "device-secret"
    path.write_text("a-server-secret-of-some-length\n")
    return path


def test_with_device_auth_a_valid_token_is_served(library: SoundLibrary, secret_file: Path) -> None:
    token = token_for(load_secret(secret_file), "kitchen")

    async def scenario() -> None:
        async with serving(library, auth_secret_file=secret_file) as plane:
            metadata = [("device_id", "kitchen"), (TOKEN_KEY, token)]
            async with SimulatedDevice(
                target(plane), "kitchen", metadata=metadata, play_in_real_time=False
            ) as dev:
                assert await dev.press(Button.MODE)
                assert dev.stream_errors == {}

    run(scenario)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([("device_id", "kitchen")], "missing device-token"),
        ([("device_id", "kitchen"), (TOKEN_KEY, "0" * 64)], "not valid for device_id 'kitchen'"),
        ([("device_id", "hall"), (TOKEN_KEY, "KITCHEN")], "not valid for device_id 'hall'"),
    ],
)
def test_with_device_auth_a_missing_or_wrong_token_is_unauthenticated(
    library: SoundLibrary, secret_file: Path, metadata: list[tuple[str, str]], message: str
) -> None:
    kitchen_token = token_for(load_secret(secret_file), "kitchen")
    metadata = [(key, kitchen_token if value == "KITCHEN" else value) for key, value in metadata]

    async def scenario() -> None:
        async with serving(library, auth_secret_file=secret_file) as plane:
            device = SimulatedDevice(target(plane), "x", metadata=metadata, play_in_real_time=False)
            await device.connect()
            for kind in ("status", "events", "audio"):
                code, details = await device.wait_for_stream_end(kind, 5)
                assert code == grpc.StatusCode.UNAUTHENTICATED
                assert message in details
            await device.disconnect()

    run(scenario)


def test_a_token_is_minted_from_the_command_line(
    secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mint_token(["kitchen", "--secret-file", str(secret_file)]) == 0
    assert capsys.readouterr().out.strip() == token_for(load_secret(secret_file), "kitchen")


def test_a_short_or_missing_secret_is_a_start_up_error(tmp_path: Path, library: SoundLibrary) -> None:
    short = tmp_path / "short"
    short.write_text("tiny")
    for path, message in [(short, "shorter than"), (tmp_path / "absent", "cannot read")]:
        config = ServerConfig(port=0, metrics_port=-1, state_db=":memory:", auth_secret_file=path)
        with pytest.raises(ValueError, match=message):
            ControlPlane(config, library)


def test_a_bad_certificate_is_a_start_up_error_naming_the_file(tmp_path: Path, library: SoundLibrary) -> None:
    bogus = tmp_path / "server.crt"
    bogus.write_text("not a certificate")
    config = ServerConfig(port=0, metrics_port=-1, state_db=":memory:", tls_cert=bogus, tls_key=bogus)
    with pytest.raises(ValueError, match=str(bogus)):
        ControlPlane(config, library)


def test_listening_beyond_loopback_without_tls_is_warned_about(
    library: SoundLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(library, host="0.0.0.0"):
            pass

    with caplog.at_level(logging.WARNING, logger="rpc.server"):
        run(scenario)
    assert any("without TLS" in record.getMessage() for record in caplog.records)


def test_loopback_without_tls_is_not_warned_about(
    library: SoundLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(library):
            pass

    with caplog.at_level(logging.WARNING, logger="rpc.server"):
        run(scenario)
    assert not any("without TLS" in record.getMessage() for record in caplog.records)
