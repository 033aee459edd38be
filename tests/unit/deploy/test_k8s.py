"""deploy/k8s against the Kubernetes API's schemas and against each other and the code: every
manifest validates, Deployments run the images' entry points with settings the services read,
probes and Services use the ports the services listen on, pods are locked down and terminate
gracefully, and the autoscalers watch queues of the topology through a Secret key that exists."""

from __future__ import annotations

import inspect
import re
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from rwasync.platform.consumer import EventConsumer
from rwasync.platform.http import SHUTDOWN_TIMEOUT
from rwasync.platform.settings import CommonSettings
from rwasync.schema import topology
from tests.support.deployment import (
    DOCKERFILES,
    REPO,
    entrypoint,
    env_names,
    env_prefix,
    settings_class,
    stages,
)

pytestmark = pytest.mark.unit

K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
CUSTOM_KINDS = {"Kustomization", "ScaledObject", "TriggerAuthentication"}
# Templates applied on their own, outside kustomization.yaml (their files say why).
APPLIED_ALONE = {"secret.example.yaml", "migrate-job.yaml"}
# The queue each consuming Deployment drains (services/*/app.py wires the same).
CONSUMES = {
    "rwasync-reconciler": topology.RECONCILER_QUEUE,
    "rwasync-pricing": topology.PRICING_QUEUE,
}
# How long a consumer lets messages in flight finish on SIGTERM.
CONSUMER_DRAIN = inspect.signature(EventConsumer.stop).parameters["timeout"].default


@cache
def manifests() -> tuple[tuple[str, dict[str, Any]], ...]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return tuple(found)


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def dockerfile_of(image: str) -> Path:
    """`rwasync/<name>:<tag>` is built from deploy/docker/<name>.Dockerfile."""
    match = re.fullmatch(r"rwasync/([a-z-]+):[\w.-]+", image)
    assert match, f"{image} is not an rwasync image"
    path = REPO / "deploy" / "docker" / f"{match.group(1)}.Dockerfile"
    assert path in DOCKERFILES, f"no Dockerfile builds {image}"
    return path


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


DEPLOYMENTS = of_kind("Deployment")
WORKLOADS = {**DEPLOYMENTS, **of_kind("Job")}


@pytest.mark.parametrize(
    "manifest",
    [m for m in manifests() if m[1]["kind"] not in CUSTOM_KINDS],
    ids=lambda m: f"{m[0]}:{m[1]['kind']}",
)
def test_every_manifest_is_valid_for_the_kubernetes_api(manifest: tuple[str, Any]) -> None:
    kubernetes_validate.validate(manifest[1], KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_every_image() -> None:
    (kustomization,) = [d for _, d in manifests() if d["kind"] == "Kustomization"]
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - APPLIED_ALONE - {"kustomization.yaml"}
    images = {
        c["image"].split(":")[0] for w in WORKLOADS.values() for c in all_containers(pod_spec(w))
    }
    assert images == {i["name"] for i in kustomization["images"]}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_a_deployment_runs_its_service_on_the_port_it_probes_and_serves(name: str) -> None:
    (container,) = pod_spec(DEPLOYMENTS[name])["containers"]
    assert "command" not in container and "args" not in container, "the image's entry point"
    settings = settings_class(entrypoint(dockerfile_of(container["image"]))[0])
    env = env_of(container)
    assert set(env) <= env_names(settings), f"{name} sets settings it does not read"
    prefix = env_prefix(settings)
    assert env[f"{prefix}HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env[f"{prefix}PORT"])}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    (service,) = [
        s
        for s in of_kind("Service").values()
        if s["spec"]["selector"].items()
        <= DEPLOYMENTS[name]["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    selector = DEPLOYMENTS[name]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= DEPLOYMENTS[name]["spec"]["template"]["metadata"]["labels"].items()
    # Prometheus scrapes /metrics on the port the service listens on.
    annotations = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["http"]


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_migrations_run_before_a_service_and_as_the_job(name: str) -> None:
    spec = pod_spec(WORKLOADS[name])
    migrations = [c for c in all_containers(spec) if c["name"] == "migrate"]
    assert len(migrations) == 1, f"{name} does not migrate first"
    (migrate,) = migrations
    if WORKLOADS[name]["kind"] == "Deployment":
        assert migrate in spec["initContainers"]
    command = entrypoint(dockerfile_of(migrate["image"])) + migrate["args"]
    assert command == ["rwasync", "migrate"]


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_pods_run_as_the_images_user_locked_down_with_bounded_resources(name: str) -> None:
    spec = pod_spec(WORKLOADS[name])
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in all_containers(spec):
        user = stages(dockerfile_of(container["image"]))[-1].all("USER")[-1].value[0]
        assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == user
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{container['name']}: no writable /tmp"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_termination_leaves_room_for_the_graceful_shutdown(name: str) -> None:
    spec = pod_spec(DEPLOYMENTS[name])
    (container,) = spec["containers"]
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    needed = int(pause[1]) + SHUTDOWN_TIMEOUT + CONSUMER_DRAIN
    assert spec["terminationGracePeriodSeconds"] > needed


def readable_settings() -> set[str]:
    names = env_names(CommonSettings)
    for path in DOCKERFILES:
        names |= env_names(settings_class(entrypoint(path)[0]))
    return names


def test_config_and_secret_hold_only_settings_the_services_read() -> None:
    (config,) = of_kind("ConfigMap").values()
    (secret,) = of_kind("Secret").values()
    assert set(config["data"]) <= readable_settings()
    assert set(secret["stringData"]) <= readable_settings()
    # Addresses with passwords are secret, never in the ConfigMap.
    assert not {"RWASYNC_DATABASE_URL", "RWASYNC_AMQP_URL"} & set(config["data"])
    assert {"RWASYNC_DATABASE_URL", "RWASYNC_AMQP_URL"} <= set(secret["stringData"])
    for workload in WORKLOADS.values():
        for container in all_containers(pod_spec(workload)):
            refs = container["envFrom"]
            assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} == set(
                of_kind("ConfigMap")
            )
            assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == set(
                of_kind("Secret")
            )


def test_the_consumers_scale_on_the_depth_of_the_queue_they_drain() -> None:
    scaled = of_kind("ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == set(CONSUMES)
    (secret,) = of_kind("Secret").values()
    for scaler in scaled.values():
        target = scaler["spec"]["scaleTargetRef"]["name"]
        assert target in DEPLOYMENTS
        queues = [t for t in scaler["spec"]["triggers"] if t["type"] == "rabbitmq"]
        assert [t["metadata"]["queueName"] for t in queues] == [CONSUMES[target]]
        for trigger in queues:
            auth = of_kind("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
            for ref in auth["spec"]["secretTargetRef"]:
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in secret["stringData"]
        if any(t["type"] == "cpu" for t in scaler["spec"]["triggers"]):
            (container,) = pod_spec(DEPLOYMENTS[target])["containers"]
            assert "cpu" in container["resources"]["requests"]


def test_the_http_autoscaler_targets_a_deployment() -> None:
    for hpa in of_kind("HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in DEPLOYMENTS


def test_an_autoscaled_deployment_leaves_its_replica_count_to_the_autoscaler() -> None:
    """`spec.replicas` in a Deployment an autoscaler manages would reset it at every
    `kubectl apply -k`; a Deployment nothing scales keeps its count."""
    autoscaled = {
        scaler["spec"]["scaleTargetRef"]["name"]
        for kind in ("ScaledObject", "HorizontalPodAutoscaler")
        for scaler in of_kind(kind).values()
    }
    assert autoscaled, "autoscaling.yaml scales nothing"
    for name, deployment in DEPLOYMENTS.items():
        if name in autoscaled:
            assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns replicas"
        else:
            assert deployment["spec"]["replicas"] >= 1, f"{name}: nothing scales it"
