"""A feed's body is spooled to /tmp (the feed poller's, unless RWASYNC_FEED_POLLER_SPOOL_DIR says
otherwise, and ingest-api's for a feed preview by URL), up to the 512 MiB caps. The deployments
gave /tmp far less: Kubernetes a 64Mi emptyDir (the kubelet evicts the pod past it) and compose a
memory-backed tmpfs inside a 512M memory limit (the container is OOM-killed), so one large,
legitimate feed killed the poller, or a provider's preview an ingest-api replica (operator
trial)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from rwasync.feed_poller.settings import FeedPollerSettings
from rwasync.ingest_api.settings import IngestSettings
from tests.support.deployment import REPO, compose

pytestmark = pytest.mark.unit

UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "M": 1024**2, "G": 1024**3, "m": 1024**2}


def size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text))
    assert match, text
    return int(match.group(1)) * UNITS.get(match.group(2), 1)


def deployment(name: str) -> dict[str, Any]:
    path = REPO / "deploy" / "k8s" / f"{name}.yaml"
    for document in yaml.safe_load_all(path.read_text()):
        if document and document["kind"] == "Deployment":
            return document
    raise AssertionError(name)


def tmp_room_k8s(name: str, spool_setting: str) -> int:
    spec = deployment(name)["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    spool = env.get(spool_setting) or "/tmp"
    mount = next(m for m in container["volumeMounts"] if spool.startswith(m["mountPath"]))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    limit = volume.get("emptyDir", {}).get("sizeLimit")
    return size(limit) if limit else 1 << 62


def defaults(settings: Any, cap: str, at_once: str) -> tuple[int, int]:
    fields = settings.model_fields
    return fields[cap].default, fields[at_once].default


@pytest.mark.parametrize(
    ("name", "spool_setting", "cap", "at_once"),
    [
        (
            "feed-poller",
            "RWASYNC_FEED_POLLER_SPOOL_DIR",
            *defaults(FeedPollerSettings, "max_body_bytes", "max_concurrent_runs"),
        ),
        (
            "ingest-api",
            "",
            *defaults(IngestSettings, "feed_preview_max_body_bytes", "feed_previews_at_once"),
        ),
    ],
)
def test_k8s_spool_volume_holds_every_feed_a_replica_spools_at_once(
    name: str, spool_setting: str, cap: int, at_once: int
) -> None:
    # A replica spools up to `at_once` bodies together (the poller's concurrent runs, ingest's
    # previews): room for one was an eviction as soon as two large feeds overlapped (review).
    room = tmp_room_k8s(name, spool_setting)
    assert room > at_once * cap, (
        f"{name}: {at_once} feed bodies of up to {cap} bytes each are spooled to a volume of"
        f" {room} bytes"
    )


@pytest.mark.parametrize(
    ("name", "cap"),
    [
        ("feed-poller", FeedPollerSettings.model_fields["max_body_bytes"].default),
        ("ingest-api", IngestSettings.model_fields["feed_preview_max_body_bytes"].default),
    ],
)
def test_compose_spools_feeds_on_disk_not_in_its_memory_limit(name: str, cap: int) -> None:
    service = compose()["services"][name]
    memory = size(service["deploy"]["resources"]["limits"]["memory"])
    spool_on_tmpfs = any(str(t).startswith("/tmp") for t in service.get("tmpfs", []))
    # tmpfs pages are charged to the container's memory cgroup
    assert not (spool_on_tmpfs and cap >= memory), (
        f"{name} spools up to {cap} bytes to a tmpfs inside a {memory}-byte memory limit"
    )
    assert "/tmp" in service["volumes"], f"{name}: /tmp is not a volume"
