"""deploy/k8s against the Kubernetes API's schemas and against each other and the code: every
manifest validates, Deployments run the images' entry points with settings the services read,
probes and Services use the ports the services listen on, pods are locked down and terminate
gracefully, and the autoscalers watch queues of the topology through a Secret key that exists."""

from __future__ import annotations

import inspect
import re
import shlex
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
K8S_README = K8S / "README.md"
KUBERNETES_VERSION = "1.30"
CUSTOM_KINDS = {"Kustomization", "ScaledObject", "TriggerAuthentication"}
# A template applied on its own, in no kustomization (its file says why).
APPLIED_ALONE = {"secret.example.yaml"}
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
    for path in sorted(K8S.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.relative_to(K8S).as_posix(), document))
    return tuple(found)


@cache
def kustomizations() -> dict[Path, dict[str, Any]]:
    """Each kustomization under deploy/k8s by its directory."""
    return {
        p.parent: yaml.safe_load(p.read_text()) for p in sorted(K8S.rglob("kustomization.yaml"))
    }


def kustomized(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(file, document) of every resource `kubectl apply -k directory` applies."""
    found = []
    for resource in kustomizations()[directory]["resources"]:
        path = (directory / resource).resolve()
        if path.is_dir():
            found += kustomized(path)
        else:
            found += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return found


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


def test_the_kustomizations_list_every_manifest_once_and_every_image() -> None:
    assert set(kustomizations()) == {K8S, K8S / "migrate"}
    listed = {path for directory in kustomizations() for path, _ in kustomized(directory)}
    files = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == files - {K8S / name for name in APPLIED_ALONE}
    owners: dict[Path, Path] = {}
    for directory in kustomizations():
        for path in {p for p, _ in kustomized(directory)}:
            assert owners.setdefault(path, directory) == directory, f"{path} is applied twice"
    # The Job's template cannot change once created: it is applied on its own, never with the
    # services' `kubectl apply -k .`.
    assert {d["kind"] for _, d in kustomized(K8S / "migrate")} == {"Job"}
    assert "Job" not in {d["kind"] for _, d in kustomized(K8S)}
    tags: dict[str, dict[str, Any]] = {}
    for directory, kustomization in kustomizations().items():
        images = {
            c["image"].split(":")[0]
            for _, d in kustomized(directory)
            if d["kind"] in {"Deployment", "Job"}
            for c in all_containers(pod_spec(d))
        }
        assert images == {i["name"] for i in kustomization["images"]}, directory
        for image in kustomization["images"]:
            same = tags.setdefault(image["name"], image)
            assert same == image, f"{image['name']}: another tag in {directory}"


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


def deploy_steps() -> list[tuple[Path, list[str]]]:
    """The commands of README.md's "Deploy" block in order, each as the directory it runs in and
    its words: `cd` followed, `for` loops unrolled, `&&` lists split, variables left as written."""
    text = K8S_README.read_text()
    section = text[text.index("\n## Deploy\n") :]
    start = section.index("```sh\n") + len("```sh\n")
    block = section[start : section.index("```", start)]
    cwd, steps = REPO, []
    for line in block.replace("\\\n", " ").splitlines():
        loop = re.fullmatch(r"\s*for (\w+) in ([^;]+); do (.+); done\s*", line)
        bodies = [loop[3].replace(f"${loop[1]}", v) for v in loop[2].split()] if loop else [line]
        for body in bodies:
            for command in body.split(" && "):
                words = shlex.split(command, comments=True)
                if words and words[0] == "cd":
                    cwd = (cwd / words[1]).resolve()
                elif words:
                    steps.append((cwd, words))
    return steps


def option_values(words: list[str], option: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == option]


def test_the_readme_deploys_in_an_order_that_works_on_a_first_install() -> None:
    """Run README.md's "Deploy" steps on paper against an empty cluster: every image is built
    from its Dockerfile, every workload runs the image built (set by `kustomize edit set image`
    in the kustomization that applies it), and the ConfigMaps and Secrets a pod reads exist once
    the step that applies it is done; the Job runs before the services."""
    built: dict[str, Path] = {}  # image reference -> Dockerfile
    images: dict[Path, dict[str, str]] = {}  # kustomization directory -> image name -> reference
    created: dict[tuple[str, str], set[str]] = {}  # (kind, name) -> keys
    applied: list[str] = []
    for cwd, words in deploy_steps():
        assert words[:2] != ["docker", "compose"], "compose needs its passwords even to build"
        if words[:2] == ["docker", "build"]:
            ((dockerfile,), (tag,)) = option_values(words, "-f"), option_values(words, "-t")
            assert (cwd / words[-1]).resolve() == REPO, "images build from the repository root"
            name = Path(dockerfile).name.removesuffix(".Dockerfile")
            assert re.fullmatch(rf"(.+/)?rwasync/{name}:[^:/]+", tag), tag
            built[tag] = (cwd / dockerfile).resolve()
        elif words[:4] == ["kustomize", "edit", "set", "image"]:
            name, reference = words[4].split("=", 1)
            assert reference in built, f"{reference} is not built above"
            images.setdefault(cwd, {})[name] = reference
        elif words[0] == "kubectl" and "create" in words:
            kind, generic, name = words[words.index("create") + 1 : words.index("create") + 4]
            assert (kind, generic) == ("secret", "generic")
            literals = [w.removeprefix("--from-literal=") for w in words if "--from-literal=" in w]
            created[("Secret", name)] = {literal.split("=", 1)[0] for literal in literals}
        elif words[0] == "kubectl" and "apply" in words:
            (kustomization,) = option_values(words, "-k") or [None]
            if kustomization is not None:
                documents = [d for _, d in kustomized((cwd / kustomization).resolve())]
            else:
                files = option_values(words, "-f")
                documents = [d for f in files for d in yaml.safe_load_all((cwd / f).read_text())]
            for document in documents:
                if document["kind"] in {"ConfigMap", "Secret"}:
                    keys = {*document.get("data", {}), *document.get("stringData", {})}
                    created[(document["kind"], document["metadata"]["name"])] = keys
            for document in documents:
                if document["kind"] not in {"Deployment", "Job"}:
                    continue
                what = f"{document['kind']} {document['metadata']['name']}"
                applied.append(document["kind"])
                for container in all_containers(pod_spec(document)):
                    assert kustomization is not None, f"{what}: no image set for it"
                    wanted = images.get((cwd / kustomization).resolve(), {})
                    image = container["image"].split(":")[0]
                    assert image in wanted, f"{what} runs {container['image']}, not the release's"
                    assert built[wanted[image]] == dockerfile_of(container["image"])
                    for ref in container.get("envFrom", []):
                        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                            if key in ref and not ref[key].get("optional", False):
                                assert (kind, ref[key]["name"]) in created, (
                                    f"{what} reads {kind} {ref[key]['name']} before it exists"
                                )
    assert set(built.values()) == {p.resolve() for p in DOCKERFILES}
    assert applied.index("Job") < applied.index("Deployment"), "migrate before the rollout"
    assert set(applied) == {"Job", "Deployment"}
    # The Secret the README creates has every key of the template.
    (secret,) = of_kind("Secret").values()
    assert created[("Secret", secret["metadata"]["name"])] == set(secret["stringData"])
