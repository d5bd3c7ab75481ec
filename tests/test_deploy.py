"""The Kubernetes manifests are valid for the current Kubernetes API, and agree with the server."""

from __future__ import annotations

import datetime
import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors.config import ServerConfig, parse_config
from actors.leds import STATUS_IDLE, mode_leds
from actors.records import RecordLimits
from cluster.redis_acl import USER
from media.library import SoundLibrary
from rpc.auth import TOKEN_KEY, token_for
from rpc.registration import SERVICE_NAME
from rpc.server import record_limits
from simulator import Button, SimulatedDevice
from tests.live import run, serving, shows
from tests.proxy import haproxy

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
VERSION = "1.37.0"


def resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        found.extend(doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc)
    return found


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [resource for resource in resources() if resource["kind"] == kind]


@pytest.mark.parametrize("resource", resources(), ids=lambda r: f"{r['kind']}/{r['metadata']['name']}")
def test_every_manifest_is_valid_against_the_kubernetes_schema(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, VERSION, strict=True)


def test_the_probes_ask_the_grpc_health_service() -> None:
    deployment = named("Deployment", "audio-control-plane")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": SERVICE_NAME}
    assert container["livenessProbe"]["grpc"]["port"] == 50051


def test_a_startup_probe_holds_liveness_until_the_health_service_first_answers() -> None:
    deployment = named("Deployment", "audio-control-plane")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    startup = container["startupProbe"]
    assert startup["grpc"] == {"port": 50051}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30, "room for a sounds directory"
    assert startup["periodSeconds"] <= 2, "a quick start is noticed quickly"
    assert "initialDelaySeconds" not in container["livenessProbe"], "the startup probe does that now"


def test_the_termination_grace_outlasts_the_servers_drain() -> None:
    deployment = named("Deployment", "audio-control-plane")
    config_map = named("ConfigMap", "audio-control-plane")
    grace = float(config_map["data"]["ACP_GRACE"])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_the_pod_runs_as_the_images_non_root_user() -> None:
    deployment = named("Deployment", "audio-control-plane")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert "USER 10001" in (K8S.parent.parent / "Dockerfile").read_text()


def test_the_config_map_holds_valid_server_settings() -> None:
    config_map = named("ConfigMap", "audio-control-plane")
    config = parse_config([], config_map["data"])
    assert isinstance(config, ServerConfig)
    assert config.sounds_dir == Path("/sounds")


def test_the_admin_api_is_exposed_only_with_tokens_from_a_secret() -> None:
    deployment = named("Deployment", "audio-control-plane")
    config_map = named("ConfigMap", "audio-control-plane")
    config = parse_config([], config_map["data"])
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": "admin", "containerPort": config.admin_port, "protocol": "TCP"} in container["ports"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    secrets = {
        volume["name"]: volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume
    }
    assert secrets["admin-tokens"] == "audio-control-plane-admin"
    assert config.admin_token_file is not None
    assert config.admin_token_file.parent == Path(mounts["admin-tokens"])


COMPOSE = K8S.parent / "compose" / "compose.yaml"
HAPROXY = K8S.parent / "haproxy" / "haproxy.cfg"


def named(kind: str, name: str) -> dict[str, Any]:
    [resource] = [found for found in by_kind(kind) if found["metadata"]["name"] == name]
    return resource


def envoy_bootstrap() -> dict[str, Any]:
    config_map = named("ConfigMap", "audio-control-plane-envoy")
    loaded: dict[str, Any] = yaml.safe_load(config_map["data"]["envoy.yaml"])
    return loaded


def test_the_envoy_config_is_valid_against_envoys_own_api() -> None:
    # Envoy's v3 API as protobuf messages (the xds-protos package): every field name, type
    # and typed_config must be one Envoy knows, or parsing fails.
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401 (registers the type)
    from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
        http_connection_manager_pb2,
    )
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
    from google.protobuf import json_format

    json_format.ParseDict(envoy_bootstrap(), bootstrap_pb2.Bootstrap())


def test_envoy_keeps_a_devices_streams_together_and_open() -> None:
    bootstrap = envoy_bootstrap()
    [listener] = bootstrap["static_resources"]["listeners"]
    [manager] = listener["filter_chains"][0]["filters"]
    config = manager["typed_config"]
    assert config["stream_idle_timeout"] == "0s", "the default 5 min would end idle device streams"
    [host] = config["route_config"]["virtual_hosts"]
    [route] = host["routes"]
    assert route["route"]["timeout"] == "0s", "the default 15 s route timeout would end every stream"
    assert route["route"]["hash_policy"] == [{"header": {"header_name": "device_id"}}]
    [cluster] = bootstrap["static_resources"]["clusters"]
    assert cluster["lb_policy"] == "RING_HASH"
    assert (
        "http2_protocol_options"
        in cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]["explicit_http_config"]
    )
    assert cluster["health_checks"][0]["grpc_health_check"] == {"service_name": SERVICE_NAME}
    assert cluster["close_connections_on_host_health_failure"] is True


def test_envoy_reaches_every_replica_pod_on_its_grpc_port() -> None:
    [cluster] = envoy_bootstrap()["static_resources"]["clusters"]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    headless = named("Service", address["socket_address"]["address"])
    assert headless["spec"]["clusterIP"] == "None"
    server = named("Deployment", "audio-control-plane")
    assert headless["spec"]["selector"] == server["spec"]["selector"]["matchLabels"]
    [container] = server["spec"]["template"]["spec"]["containers"]
    grpc_port = next(port for port in container["ports"] if port["name"] == "grpc")["containerPort"]
    assert address["socket_address"]["port_value"] == grpc_port


def test_the_replicas_share_the_redis_of_the_manifests_each_under_its_pods_name() -> None:
    config = parse_config([], named("ConfigMap", "audio-control-plane")["data"])
    redis_service = named("Service", "audio-control-plane-redis")
    assert (
        config.store
        == f"redis://acp@{redis_service['metadata']['name']}:{redis_service['spec']['ports'][0]['port']}/0"
    )
    server = named("Deployment", "audio-control-plane")
    assert server["spec"]["replicas"] >= 3
    [container] = server["spec"]["template"]["spec"]["containers"]
    assert {"name": "ACP_REPLICA_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container[
        "env"
    ]


def test_redis_fsyncs_every_write_in_kubernetes_and_compose() -> None:
    [redis_container] = named("StatefulSet", "audio-control-plane-redis")["spec"]["template"]["spec"][
        "containers"
    ]
    compose = yaml.safe_load(COMPOSE.read_text())
    for args in (redis_container["args"], compose["services"]["redis"]["command"]):
        text = " ".join(args)
        assert "--appendonly yes" in text
        assert "--appendfsync always" in text


def test_the_compose_file_runs_three_valid_replicas_behind_the_shipped_haproxy_config() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    replicas = {name: service for name, service in services.items() if name.startswith("replica")}
    assert len(replicas) == 3
    names = set()
    for service in replicas.values():
        config = parse_config([], {key: str(value) for key, value in service["environment"].items()})
        assert config.store == "redis://acp@redis:6379/0"
        names.add(config.replica_id)
    assert len(names) == 3, "each replica under a name of its own"
    haproxy = services["haproxy"]
    [mount] = haproxy["volumes"]
    assert (COMPOSE.parent / mount.split(":")[0]).resolve() == HAPROXY.resolve()
    used = set(re.findall(r"\$\{(ACP_[A-Z_0-9]+)(?:\[\*\])?\}", HAPROXY.read_text()))
    assert used == set(haproxy["environment"]), "every variable the config uses, and no other"
    targets = {
        value.split(":")[0] for key, value in haproxy["environment"].items() if key.startswith("ACP_REPLICA")
    }
    assert targets == set(replicas)


def test_redis_requires_the_replicas_acl_user_and_every_secret_comes_from_a_secret_in_kubernetes() -> None:
    [redis] = named("StatefulSet", "audio-control-plane-redis")["spec"]["template"]["spec"]["containers"]
    redis_pod = named("StatefulSet", "audio-control-plane-redis")["spec"]["template"]["spec"]
    acl_path = Path(redis["args"][redis["args"].index("--aclfile") + 1])
    [acl_mount] = [mount for mount in redis["volumeMounts"] if Path(mount["mountPath"]) == acl_path.parent]
    [acl_volume] = [volume for volume in redis_pod["volumes"] if volume["name"] == acl_mount["name"]]
    assert acl_volume["secret"]["items"] == [{"key": acl_path.name, "path": acl_path.name}]
    config = parse_config([], named("ConfigMap", "audio-control-plane")["data"])
    assert urlsplit(config.store).username == USER
    assert urlsplit(config.store).password is None, "no password in the ConfigMap"
    assert config.store_password_file is not None
    assert config.store_secret_file is not None
    pod = named("Deployment", "audio-control-plane")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    for path in (config.store_password_file, config.store_secret_file):
        [mount] = [mount for mount in container["volumeMounts"] if Path(mount["mountPath"]) == path.parent]
        [volume] = [volume for volume in pod["volumes"] if volume["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == acl_volume["secret"]["secretName"]
        assert {"key": path.name, "path": path.name} in volume["secret"]["items"]


def test_redis_requires_the_replicas_acl_user_and_every_secret_comes_from_a_secret_in_compose() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    redis = compose["services"]["redis"]
    acl_path = Path(redis["command"][redis["command"].index("--aclfile") + 1])
    assert acl_path.parent == Path("/run/secrets")
    assert acl_path.name in redis["secrets"]
    for name, service in compose["services"].items():
        if not name.startswith("replica"):
            continue
        config = parse_config([], {key: str(value) for key, value in service["environment"].items()})
        assert urlsplit(config.store).username == USER
        assert urlsplit(config.store).password is None
        for path in (config.store_password_file, config.store_secret_file):
            assert path is not None
            assert path.parent == Path("/run/secrets")
            assert path.name in service["secrets"]
            assert path.name in compose["secrets"]


# Devices authenticate, and reach the proxy with TLS.


def pod_secret_mounts(deployment: dict[str, Any]) -> dict[str, Path]:
    """Secret name -> where the pod's container mounts it."""
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    mounts = {mount["name"]: Path(mount["mountPath"]) for mount in container["volumeMounts"]}
    return {
        volume["secret"]["secretName"]: mounts[volume["name"]]
        for volume in pod["volumes"]
        if "secret" in volume
    }


def test_the_replicas_authenticate_devices_with_a_secret_mounted_from_a_secret() -> None:
    config = parse_config([], named("ConfigMap", "audio-control-plane")["data"])
    mounts = pod_secret_mounts(named("Deployment", "audio-control-plane"))
    assert config.auth_secret_file is not None
    assert config.auth_secret_file.parent == mounts["audio-control-plane-device-auth"]
    assert record_limits(config) == RecordLimits(), "authenticated devices: no cap, no retention"


def test_the_compose_replicas_authenticate_devices() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    replicas = [service for name, service in compose["services"].items() if name.startswith("replica")]
    for service in replicas:
        config = parse_config([], {key: str(value) for key, value in service["environment"].items()})
        assert config.auth_secret_file == Path("/run/secrets/device-auth.secret")
        assert "device-auth.secret" in service["secrets"]
    assert "device-auth.secret" in compose["secrets"]


def test_devices_reach_envoy_with_tls_from_a_secret() -> None:
    [listener] = envoy_bootstrap()["static_resources"]["listeners"]
    [chain] = listener["filter_chains"]
    socket = chain["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    context = socket["typed_config"]
    assert context["@type"].endswith("tls.v3.DownstreamTlsContext")
    assert context["common_tls_context"]["alpn_protocols"] == ["h2"]
    [certificate] = context["common_tls_context"]["tls_certificates"]
    mounted = pod_secret_mounts(named("Deployment", "audio-control-plane-envoy"))[
        "audio-control-plane-device-tls"
    ]
    for key, name in (("certificate_chain", "tls.crt"), ("private_key", "tls.key")):
        assert Path(certificate[key]["filename"]) == mounted / name


def test_only_envoy_reaches_the_replicas_grpc_port() -> None:
    policy = named("NetworkPolicy", "audio-control-plane-grpc")["spec"]
    server = named("Deployment", "audio-control-plane")
    envoy = named("Deployment", "audio-control-plane-envoy")
    assert policy["podSelector"] == server["spec"]["selector"]
    grpc_rules = [rule for rule in policy["ingress"] if {"port": "grpc", "protocol": "TCP"} in rule["ports"]]
    assert grpc_rules == [
        {
            "from": [{"podSelector": envoy["spec"]["selector"]}],
            "ports": [{"port": "grpc", "protocol": "TCP"}],
        }
    ]


def test_the_compose_haproxy_ends_tls_with_a_certificate_from_a_secret() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    haproxy = compose["services"]["haproxy"]
    options = haproxy["environment"]["ACP_PROXY_TLS"].split()
    assert options[:2] == ["ssl", "crt"]
    assert Path(options[2]) == Path("/run/secrets") / "device-tls.pem"
    assert options[3:] == ["alpn", "h2"]
    assert haproxy["secrets"] == ["device-tls.pem"]
    assert "device-tls.pem" in compose["secrets"]


def self_signed(directory: Path) -> tuple[Path, bytes]:
    """A certificate for 127.0.0.1 and its key in one PEM (as HAProxy takes it), and the certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devices.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bundle = directory / "device-tls.pem"
    bundle.write_bytes(certificate_pem + key_pem)
    return bundle, certificate_pem


DEVICE_AUTH_SECRET = "device-auth-secret-of-the-deploy-test"


def test_the_shipped_haproxy_config_ends_tls_for_a_device_that_authenticates(
    library: SoundLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the compose file runs it: TLS options from ACP_PROXY_TLS, device auth on the replica."""
    bundle, certificate = self_signed(tmp_path)
    monkeypatch.setenv("ACP_PROXY_TLS", f"ssl crt {bundle} alpn h2")
    secret_file = tmp_path / "device-auth.secret"
    secret_file.write_text(DEVICE_AUTH_SECRET)
    token = token_for(DEVICE_AUTH_SECRET.encode(), "kitchen")

    async def scenario() -> None:
        async with serving(library, auth_secret_file=secret_file) as plane:
            with haproxy([f"127.0.0.1:{plane.port}"]) as front_door:
                credentials = grpc.ssl_channel_credentials(root_certificates=certificate)
                device = SimulatedDevice(
                    front_door,
                    "kitchen",
                    metadata=[("device_id", "kitchen"), (TOKEN_KEY, token)],
                    credentials=credentials,
                    play_in_real_time=False,
                )
                async with device:
                    assert await device.press(Button.MODE)
                    await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
                plaintext = SimulatedDevice(front_door, "kitchen", connect_timeout=2, play_in_real_time=False)
                with pytest.raises(ConnectionError):
                    await plaintext.connect()

    run(scenario)
