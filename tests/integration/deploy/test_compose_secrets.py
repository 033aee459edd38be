"""Compose hands the whole `.env` (env_file) to every rwasync container, and `.env` holds the
RabbitMQ administrator's and Grafana's admin passwords, which no rwasync process needs: the
internet-facing ingest-api carried them (operator trial). They are blanked in every service's
environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.deployment import prepare_project, resolved_compose

pytestmark = pytest.mark.integration

NOT_NEEDED = ("RWASYNC_RABBITMQ_ADMIN_PASSWORD", "RWASYNC_GRAFANA_ADMIN_PASSWORD")


@pytest.mark.parametrize("name", ["ingest-api", "pricing", "feed-poller", "reconciler"])
def test_a_service_gets_no_admin_password(tmp_path: Path, name: str) -> None:
    prepare_project(tmp_path)
    environment = resolved_compose(tmp_path)["services"][name].get("environment", {})
    leaked = sorted(key for key in NOT_NEEDED if environment.get(key))
    assert not leaked, f"{name} is given {leaked}"
