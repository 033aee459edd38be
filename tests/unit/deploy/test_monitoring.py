"""The monitoring of the compose deployment against what it monitors: Prometheus scrapes every
rwasync service on the port it listens on and labels it with its service (on Kubernetes too),
loads the alerting rules, Grafana is provisioned with that Prometheus and the dashboard, and every
metric the dashboard and the alerts query is one the code defines, with the labels it has, and
one docs/api.md lists (the e2e test tests/e2e/test_compose_as_processes.py checks the services
really export the dashboard's)."""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

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
from tests.unit.deploy.test_k8s import DEPLOYMENTS, K8S_README, dockerfile_of, pod_spec

pytestmark = pytest.mark.unit

SERVICES = compose()["services"]
RWASYNC = sorted(n for n in image_services() if "healthcheck" in SERVICES[n])
ALERTS = PROMETHEUS_CONFIG.parent / "alerts.yml"
# The label every scrape configuration adds to name the service a sample comes from: the
# services' metrics do not carry it, and `job` names the service in compose only (Kubernetes'
# annotation-based discovery scrapes every pod under one job). `instance` is the replica.
SERVICE_LABEL = "service"
SCRAPE_LABELS = {SERVICE_LABEL, "instance"}
# Prometheus's own series (besides the services' metrics) an alert may read, with their labels.
PROMETHEUS_SERIES = {"up": {"job", "instance"}}
# Probes and scrapes answer every few seconds, whatever the traffic: left out of the HTTP figures.
PROBES = '"/healthz|/readyz|/metrics"'
HTTP_METRICS = ("rwasync_http_requests_total", "rwasync_http_request_seconds")


def mounts(service: str) -> dict[str, str]:
    """Container path -> what compose mounts there (a ./path or a named volume)."""
    return {parts[1]: parts[0] for parts in (v.split(":") for v in SERVICES[service]["volumes"])}


@cache
def defined_metrics() -> dict[str, set[str]]:
    """Every sample name the code exports, with its labels: each prometheus_client Counter,
    Gauge, Histogram or Summary created with a literal `rwasync_` name in libs/, services/ and
    tools/ (a counter's samples end in `_total`, a histogram's in `_bucket`, `_sum`, `_count`)."""
    kinds = {"Counter", "Gauge", "Histogram", "Summary"}
    found: dict[str, set[str]] = {}
    for path in sorted(
        p for top in ("libs", "services", "tools") for p in REPO.glob(f"{top}/*/src/**/*.py")
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            kind = getattr(func, "id", None) or getattr(func, "attr", None)
            name = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
            if kind not in kinds or not isinstance(name, str) or not name.startswith("rwasync_"):
                continue
            given = [k.value for k in node.keywords if k.arg == "labelnames"] + node.args[2:3]
            labels = set(ast.literal_eval(given[0])) if given else set()
            samples = {
                "Counter": [f"{name.removesuffix('_total')}_total"],
                "Gauge": [name],
                "Histogram": [f"{name}_bucket", f"{name}_sum", f"{name}_count"],
                "Summary": [name, f"{name}_sum", f"{name}_count"],
            }[kind]
            for sample in samples:
                found[sample] = labels | ({"le"} if sample.endswith("_bucket") else set())
    return found


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def used_labels(expr: str) -> set[str]:
    """The label names a PromQL expression groups by or matches on."""
    labels = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in group.split(",") if label.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def series_labels(expr: str) -> dict[str, set[str]]:
    """The series an expression reads (the code's metrics, Prometheus's own), with the labels
    each carries once scraped."""
    series = {s: PROMETHEUS_SERIES[s] for s in PROMETHEUS_SERIES if re.search(rf"\b{s}\{{", expr)}
    for metric in queried_metrics(expr):
        assert metric in defined_metrics(), f"no code defines {metric}"
        series[metric] = defined_metrics()[metric]
    return {name: labels | SCRAPE_LABELS for name, labels in series.items()}


def all_queries() -> list[tuple[str, str, set[str]]]:
    """(where, expression, label names its legend or annotations show) of every dashboard query
    and every alert."""
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                queries.append((f"{path.name}: {panel['title']}", target["expr"], shown))
    for rule in alert_rules():
        shown = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])))
        queries.append((f"{ALERTS.name}: {rule['alert']}", rule["expr"], shown))
    return queries


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


def test_every_metric_the_dashboard_and_the_alerts_query_is_documented() -> None:
    api = (REPO / "docs" / "api.md").read_text()
    section = api[api.index("### 4.4 Metrics") :]
    documented = set(re.findall(r"`(rwasync_[a-z0-9_]+)`", section))
    assert len(dashboard_queries()) >= 20
    for title, expr, _ in all_queries():
        metrics = queried_metrics(expr)
        assert metrics or title.startswith(ALERTS.name), f"{title}: queries no rwasync metric"
        for metric in metrics:
            family = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert family in documented, f"{title}: {metric} is not in docs/api.md 4.4"


def test_every_metric_and_label_the_dashboard_and_the_alerts_use_is_the_codes() -> None:
    assert {"rwasync_http_requests_total", "rwasync_feed_runs_total"} <= set(defined_metrics())
    for where, expr, shown in all_queries():
        series = series_labels(expr)
        assert series, f"{where}: reads no series"
        labels = set().union(*series.values())
        assert used_labels(expr) <= labels, f"{where}: no such label"
        aggregated = re.search(r"\b(sum|max|min|avg|count)\b", expr)
        assert shown <= (used_labels(expr) if aggregated else labels), f"{where}: shows no label"
        assert not {"job"} & (used_labels(expr) | shown), (
            f"{where}: `job` is one value for every service under Kubernetes; use `service`"
        )


def test_the_http_figures_leave_the_probes_out() -> None:
    for where, expr, _ in all_queries():
        for selector in re.findall(rf"\b(?:{'|'.join(HTTP_METRICS)})\w*(\{{[^}}]*\}})?", expr):
            probe = re.search(r'route="(/healthz|/readyz|/metrics)"', selector)
            assert probe or f"route!~{PROBES}" in selector, f"{where}: counts the probes"


def test_prometheus_labels_every_target_with_its_service() -> None:
    for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]:
        rules = [r for r in job["relabel_configs"] if r.get("target_label") == SERVICE_LABEL]
        assert rules == [{"target_label": SERVICE_LABEL, "replacement": job["job_name"]}]


def relabelled(rule: dict[str, Any], labels: dict[str, str]) -> str | None:
    """What a Prometheus `replace` relabelling (scrape config or Operator spelling) writes."""
    sources = rule.get("source_labels") or rule.get("sourceLabels") or []
    value = rule.get("separator", ";").join(labels.get(s, "") for s in sources)
    match = re.fullmatch(rule.get("regex", "(.*)"), value)
    if match is None:
        return None
    return match.expand(re.sub(r"\$\{?(\d+)\}?", r"\\\1", rule.get("replacement", "$1")))


def test_the_kubernetes_scrape_labels_a_pod_with_the_same_service_as_compose() -> None:
    """deploy/k8s/README.md's relabelling (a scrape config's, a PodMonitor's) gives each pod
    the `service` value compose's Prometheus gives the same service, so the dashboard and the
    alerts work unchanged on both."""
    compose_name = {path: name for name, path in image_services().items() if name in RWASYNC}
    blocks = re.findall(r"```yaml\n(.*?)```", K8S_README.read_text(), re.S)
    rules = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if SERVICE_LABEL in (node.get("target_label"), node.get("targetLabel")):
                rules.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for block in blocks:
        walk(yaml.safe_load(block))
    assert len(rules) == 2, "a scrape config's and a PodMonitor's relabelling"
    for rule in rules:
        for deployment in DEPLOYMENTS.values():
            (container,) = pod_spec(deployment)["containers"]
            pod = {
                f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
                for k, v in deployment["spec"]["template"]["metadata"]["labels"].items()
            }
            wanted = compose_name[dockerfile_of(container["image"])]
            assert relabelled(rule, pod) == wanted, deployment["metadata"]["name"]


def test_prometheus_loads_the_alerting_rules_compose_mounts() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert mounts("prometheus")["/etc/prometheus/alerts.yml"] == "./deploy/prometheus/alerts.yml"
    rules = alert_rules()
    assert len(rules) >= 5
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
