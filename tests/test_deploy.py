"""The Kubernetes manifests are valid for the current Kubernetes API, and agree with the server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from actors.config import ServerConfig, parse_config
from cluster.redis_acl import USER
from rpc.registration import SERVICE_NAME

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
    used = set(re.findall(r"\$\{(ACP_[A-Z_0-9]+)\}", HAPROXY.read_text()))
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
