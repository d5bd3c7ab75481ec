"""The Kubernetes manifests are valid for the current Kubernetes API, and agree with the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from actors.config import ServerConfig, parse_config
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
    [deployment] = by_kind("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": SERVICE_NAME}
    assert container["livenessProbe"]["grpc"]["port"] == 50051


def test_the_termination_grace_outlasts_the_servers_drain() -> None:
    [deployment] = by_kind("Deployment")
    [config_map] = by_kind("ConfigMap")
    grace = float(config_map["data"]["ACP_GRACE"])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_the_pod_runs_as_the_images_non_root_user() -> None:
    [deployment] = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert "USER 10001" in (K8S.parent.parent / "Dockerfile").read_text()


def test_the_config_map_holds_valid_server_settings() -> None:
    [config_map] = by_kind("ConfigMap")
    config = parse_config([], config_map["data"])
    assert isinstance(config, ServerConfig)
    assert config.sounds_dir == Path("/sounds")


def test_the_admin_api_is_exposed_only_with_tokens_from_a_secret() -> None:
    [deployment] = by_kind("Deployment")
    [config_map] = by_kind("ConfigMap")
    config = parse_config([], config_map["data"])
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": "admin", "containerPort": config.admin_port, "protocol": "TCP"} in container["ports"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    secrets = {
        volume["name"]: volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume
    }
    assert secrets == {"admin-tokens": "audio-control-plane-admin"}
    assert config.admin_token_file is not None
    assert config.admin_token_file.parent == Path(mounts["admin-tokens"])
