"""docker-compose.yml against the code it deploys: every setting it sets is one the service reads,
health checks probe the port the service listens on, the gateway's upstreams are services on their
ports, the broker's definitions fit the topology, and every scaled service can be scaled."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest
from yarl import URL

from rwasync.platform.settings import CommonSettings
from rwasync.schema import topology
from tests.support.deployment import (
    CADDYFILE,
    RABBITMQ_DEFINITIONS,
    RENDER_DEFINITIONS,
    compose,
    entrypoint,
    env_names,
    env_prefix,
    image_services,
    operations_commands,
    settings_class,
)
from tests.unit.deploy.test_images import pinned

pytestmark = pytest.mark.unit

SERVICES = compose()["services"]
# The long-running rwasync services: a repository image and a health check.
RWASYNC = sorted(n for n in image_services() if "healthcheck" in SERVICES[n])
CONNECTIONS = ("RWASYNC_DATABASE_URL", "RWASYNC_AMQP_URL")


def settings_of(name: str) -> Any:
    return settings_class(entrypoint(image_services()[name])[0])


def url(value: str) -> URL:
    """A URL from the compose file, its `${...}` interpolations replaced by a placeholder."""
    return URL(re.sub(r"\$\{[^}]*\}", "x", value))


def test_the_four_services_and_the_migrate_job_run_repository_images() -> None:
    assert RWASYNC == ["feed-poller", "ingest-api", "pricing", "reconciler"]
    assert entrypoint(image_services()["migrate"]) + SERVICES["migrate"]["command"] == [
        "rwasync",
        "migrate",
    ]


@pytest.mark.parametrize("name", RWASYNC)
def test_a_service_can_be_scaled(name: str) -> None:
    service = SERVICES[name]
    assert "container_name" not in service, f"{name}: a fixed container name cannot be scaled"
    assert "ports" not in service, f"{name}: a fixed host port cannot be scaled (use the gateway)"


@pytest.mark.parametrize("name", RWASYNC)
def test_every_setting_compose_sets_is_one_the_service_reads(name: str) -> None:
    readable = env_names(settings_of(name)) | env_names(CommonSettings)
    environment = SERVICES[name]["environment"]
    # The administrators' passwords, blanked over what `.env` would give (never read).
    blanked = {k for k in ("RWASYNC_RABBITMQ_ADMIN_PASSWORD", "RWASYNC_GRAFANA_ADMIN_PASSWORD")}
    assert all(environment.get(k) == "" for k in blanked), name
    unknown = set(environment) - readable - blanked
    assert not unknown, f"{name} does not read {sorted(unknown)}"


@pytest.mark.parametrize("name", [*RWASYNC, "migrate", "cli"])
def test_connections_point_at_the_compose_servers(name: str) -> None:
    environment = SERVICES[name]["environment"]
    database, broker = (url(environment[key]) for key in CONNECTIONS)
    postgres = SERVICES["postgres"]["environment"]
    assert (database.host, database.port, database.user) == ("postgres", 5432, "rwasync")
    assert database.user == postgres["POSTGRES_USER"]
    assert database.path == "/" + postgres["POSTGRES_DB"]
    definitions = json.loads(RABBITMQ_DEFINITIONS.read_text())
    assert (broker.host, broker.port) == ("rabbitmq", 5672)
    assert broker.user in {u["name"] for u in definitions["users"]}
    assert broker.path.lstrip("/") in {v["name"] for v in definitions["vhosts"]}


@pytest.mark.parametrize("name", RWASYNC)
def test_the_health_check_probes_readyz_on_the_port_the_service_listens_on(name: str) -> None:
    service = SERVICES[name]
    prefix = env_prefix(settings_of(name))
    environment = service["environment"]
    assert environment[f"{prefix}HOST"] == "0.0.0.0"
    probe = URL(service["healthcheck"]["test"][-1])
    assert (probe.host, probe.port, probe.path) == (
        "127.0.0.1",
        int(environment[f"{prefix}PORT"]),
        "/readyz",
    )


@pytest.mark.parametrize("name", RWASYNC)
def test_a_service_restarts_is_bounded_and_waits_for_its_dependencies(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] == "unless-stopped"
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and limits["memory"]
    assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert service["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
    # /tmp writable: a tmpfs, or a volume where a feed's body is spooled (`test_spool_room`).
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"] or "/tmp" in service.get("volumes", [])
    # Longer than the HTTP drain (10 s) plus the consumer drain (10 s) of a graceful shutdown.
    assert int(service["stop_grace_period"].removesuffix("s")) >= 25


def test_third_party_images_are_pinned_by_version() -> None:
    for name in ("postgres", "rabbitmq", "gateway", "prometheus", "grafana"):
        assert pinned(SERVICES[name]["image"]), SERVICES[name]["image"]


def test_the_servers_keep_their_data_on_named_volumes() -> None:
    volumes = compose()["volumes"]
    for name, path in (
        ("postgres", "/var/lib/postgresql/data"),
        ("rabbitmq", "/var/lib/rabbitmq"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
    ):
        mounts = dict(v.split(":")[:2][::-1] for v in SERVICES[name]["volumes"])
        assert mounts[path] in volumes, f"{name} keeps {path} on no named volume"


def gateway_upstreams() -> list[tuple[str, int]]:
    return [
        (name, int(port))
        for name, port in re.findall(r"dynamic a (\S+) (\d+)", CADDYFILE.read_text())
    ]


def test_the_gateway_sends_each_api_to_its_service_on_its_port() -> None:
    upstreams = gateway_upstreams()
    assert {name for name, _ in upstreams} == {"ingest-api", "pricing"}
    for name, port in upstreams:
        environment = SERVICES[name]["environment"]
        assert int(environment[f"{env_prefix(settings_of(name))}PORT"]) == port
    mounted = [v.split(":")[0] for v in SERVICES["gateway"]["volumes"]]
    assert "./deploy/gateway/Caddyfile" in mounted


def test_only_the_gateway_is_published_beyond_this_host() -> None:
    published = {name: service["ports"] for name, service in SERVICES.items() if "ports" in service}
    assert set(published) == {"gateway", "rabbitmq", "grafana"}
    for name in ("rabbitmq", "grafana"):
        assert all(p.startswith("127.0.0.1:") for p in published[name]), name


def test_the_broker_user_may_use_every_name_of_the_topology_and_nothing_else() -> None:
    definitions = json.loads(RABBITMQ_DEFINITIONS.read_text())
    broker = url(SERVICES["ingest-api"]["environment"]["RWASYNC_AMQP_URL"])
    (permission,) = [p for p in definitions["permissions"] if p["user"] == broker.user]
    named = {
        key: value
        for key, value in vars(topology).items()
        if isinstance(value, str) and not key.startswith("HEADER_")
    }
    queues = [value for key, value in named.items() if key.endswith("_QUEUE")]
    exchanges = [value for key, value in named.items() if key.endswith("_EXCHANGE")]
    names = exchanges + queues + [topology.dead_letter_queue(q) for q in queues]
    for kind in ("configure", "write", "read"):
        for name in names:
            assert re.match(permission[kind], name), f"{kind} {permission[kind]} misses {name}"
        assert not re.match(permission[kind], "amq.default"), f"{kind} is wider than rwasync"


def test_the_broker_policies_apply_to_the_work_queues() -> None:
    definitions = json.loads(RABBITMQ_DEFINITIONS.read_text())
    for queue in (topology.RECONCILER_QUEUE, topology.PRICING_QUEUE):
        for name in (queue, topology.dead_letter_queue(queue)):
            assert any(re.match(p["pattern"], name) for p in definitions["policies"]), name


def test_the_definitions_get_exactly_the_passwords_compose_gives_the_broker() -> None:
    placeholders = set(re.findall(r"@([A-Z_]+)@", RABBITMQ_DEFINITIONS.read_text()))
    assert placeholders == set(re.findall(r"@([A-Z_]+)@", RENDER_DEFINITIONS.read_text()))
    assert placeholders == set(SERVICES["rabbitmq"]["environment"])


def test_the_readmes_compose_commands_name_services_that_do_what_they_ask() -> None:
    commands = [c for c in operations_commands() if c.startswith("docker compose ")]
    scale = "docker compose up -d --scale reconciler=3 --scale pricing=2 --scale ingest-api=2"
    assert scale in commands
    for command in commands:
        words = shlex.split(command)
        assert words[2] in {"config", "build", "up", "ps", "run", "stop", "down", "logs"}, command
        for word in words:
            if "=" in word and not word.startswith("-"):
                name = word.split("=")[0]
                assert name in RWASYNC, f"{command}: {name} cannot be scaled"
        if words[2] == "run":
            assert words[3:5] == ["--rm", "cli"], command
            assert entrypoint(image_services()["cli"]) == ["rwasync"]
