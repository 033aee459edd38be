"""The monitoring of the compose deployment against what it monitors: Prometheus scrapes every
rwasync service on the port it listens on, Grafana is provisioned with that Prometheus and the
dashboard, and every metric the dashboard queries is one docs/api.md lists (the e2e test
tests/e2e/test_compose_as_processes.py checks the services really export them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from yarl import URL

from tests.support.deployment import (
    DASHBOARDS,
    GRAFANA,
    PROMETHEUS_CONFIG,
    REPO,
    compose,
    dashboard_queries,
    entrypoint,
    env_prefix,
    image_services,
    queried_metrics,
    settings_class,
)

pytestmark = pytest.mark.unit

SERVICES = compose()["services"]
RWASYNC = sorted(n for n in image_services() if "healthcheck" in SERVICES[n])


def mounts(service: str) -> dict[str, str]:
    """Container path -> what compose mounts there (a ./path or a named volume)."""
    return {parts[1]: parts[0] for parts in (v.split(":") for v in SERVICES[service]["volumes"])}


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    scraped = {}
    for job in config["scrape_configs"]:
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [job["job_name"]], "a job scrapes the service it is named after"
        scraped[job["job_name"]] = int(sd["port"])
    assert sorted(scraped) == RWASYNC
    for name, port in scraped.items():
        prefix = env_prefix(settings_class(entrypoint(image_services()[name])[0]))
        assert int(SERVICES[name]["environment"][f"{prefix}PORT"]) == port, name
    assert (
        mounts("prometheus")["/etc/prometheus/prometheus.yml"]
        == "./deploy/prometheus/prometheus.yml"
    )
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]


def test_grafana_is_provisioned_with_the_prometheus_and_the_dashboards() -> None:
    mounted = mounts("grafana")
    assert mounted["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    (datasource,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"]
    address = URL(datasource["url"])
    assert address.host == "prometheus" and "prometheus" in SERVICES
    # Prometheus listens on 9090 (no --web.listen-address): its own health check probes it.
    assert not any("listen-address" in arg for arg in SERVICES["prometheus"]["command"])
    assert address.port == URL(SERVICES["prometheus"]["healthcheck"]["test"][-1]).port == 9090
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "rwasync.yaml").read_text()
    )["providers"]
    folder = provider["options"]["path"]
    assert (REPO / mounted[folder]).resolve() == (GRAFANA / "dashboards").resolve()
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / mounted[folder] / Path(home).relative_to(folder)).exists()
    assert DASHBOARDS, "no dashboard in deploy/grafana/dashboards"
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_every_metric_the_dashboard_queries_is_documented() -> None:
    api = (REPO / "docs" / "api.md").read_text()
    section = api[api.index("### 4.4 Metrics") :]
    documented = set(re.findall(r"`(rwasync_[a-z0-9_]+)`", section))
    queries = dashboard_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        metrics = queried_metrics(expr)
        assert metrics, f"{title}: queries no rwasync metric"
        for metric in metrics:
            family = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert family in documented, f"{title}: {metric} is not in docs/api.md 4.4"
