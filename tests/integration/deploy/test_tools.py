"""The deployment files read by the tools that run them, without a Docker engine: Debian's
docker-compose validates the compose file, Caddy the gateway's configuration, the broker's
definitions render and their permissions and policies hold on a real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shlex
import subprocess
from pathlib import Path

import aio_pika
import pytest
from yarl import URL

from rwasync.platform.broker import Broker
from rwasync.schema import topology
from rwasync.schema.messages import message_for
from tests.support.deployment import (
    CADDYFILE,
    PASSWORDS,
    RABBITMQ_DEFINITIONS,
    RENDER_DEFINITIONS,
    caddy,
    operations_commands,
    prepare_project,
    resolved_compose,
    run_compose,
)
from tests.support.events import at, upserted
from tests.support.infra import Infra, unique_name

pytestmark = pytest.mark.integration


def passwords() -> dict[str, str]:
    return {name: secrets.token_hex(24) for name in PASSWORDS}


def test_the_readmes_compose_commands_validate_the_file(tmp_path: Path) -> None:
    """README.md's preparation of .env, then each `docker compose config` line it shows, run by
    Debian's docker-compose (the other lines need a Docker engine; tests/unit/deploy checks them
    and tests/e2e/test_compose_as_processes.py runs what they start)."""
    prepare_project(tmp_path)
    assert set(PASSWORDS) <= set(re.findall(r"^(\w+)=", (tmp_path / ".env").read_text(), re.M))
    configs = [c for c in operations_commands() if c.startswith("docker compose config")]
    assert configs, "README.md shows no `docker compose config`"
    for command in configs:
        result = run_compose(tmp_path, *shlex.split(command)[2:])
        assert result.returncode == 0, f"{command}: {result.stderr}"
    resolved = resolved_compose(tmp_path)
    assert set(resolved["services"]) >= {"migrate", "ingest-api", "gateway", "rabbitmq"}


@pytest.mark.parametrize("missing", PASSWORDS)
def test_compose_refuses_to_start_without_a_password(tmp_path: Path, missing: str) -> None:
    (tmp_path / ".env").write_text(
        "".join(f"{k}={v}\n" for k, v in passwords().items() if k != missing)
    )
    result = run_compose(tmp_path, "config", "-q")
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_caddy_accepts_the_gateway_configuration() -> None:
    result = subprocess.run(
        [caddy(), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ingest-api" in result.stdout and "pricing" in result.stdout


def render(tmp_path: Path, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(RENDER_DEFINITIONS), str(RABBITMQ_DEFINITIONS), str(tmp_path / "out.json")],
        env={"PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_definitions_render_with_the_passwords_from_the_environment(tmp_path: Path) -> None:
    chosen = passwords()
    result = render(tmp_path, chosen)
    assert result.returncode == 0, result.stderr
    users = {u["name"]: u for u in json.loads((tmp_path / "out.json").read_text())["users"]}
    assert users["rwasync"]["password"] == chosen["RWASYNC_RABBITMQ_PASSWORD"]
    assert users["rwasync-admin"]["password"] == chosen["RWASYNC_RABBITMQ_ADMIN_PASSWORD"]
    assert (tmp_path / "out.json").stat().st_mode & 0o077 == 0  # readable by the broker only


@pytest.mark.parametrize("bad", ["", "with space", 'qu"ote', "sl/ash", "at@sign"])
def test_rendering_refuses_a_password_it_cannot_write_safely(tmp_path: Path, bad: str) -> None:
    result = render(tmp_path, {**passwords(), "RWASYNC_RABBITMQ_PASSWORD": bad})
    assert result.returncode != 0
    assert "RWASYNC_RABBITMQ_PASSWORD" in result.stderr
    assert not (tmp_path / "out.json").exists()


async def test_the_services_work_with_the_definitions_permissions_and_policies(
    test_infra: Infra,
) -> None:
    """The definitions' vhost settings, applied to a vhost and user of this test's own: the
    services declare their topology, publish and consume with those permissions alone, and the
    policies reach the queues."""
    definitions = json.loads(RABBITMQ_DEFINITIONS.read_text())
    (permission,) = [p for p in definitions["permissions"] if p["user"] == "rwasync"]
    vhost, user, password = unique_name("rwasync_defs"), unique_name("rwasync_defs"), "x" * 24
    ctl = test_infra.rabbit.run
    test_infra.rabbit.add_vhost(vhost)
    ctl(["add_user", user, password])
    try:
        rights = [permission[k] for k in ("configure", "write", "read")]
        ctl(["set_permissions", "-p", vhost, user, *rights])
        for policy in definitions["policies"]:
            ctl(
                [
                    *("set_policy", "-p", vhost, "--apply-to", policy["apply-to"]),
                    *("--priority", str(policy["priority"]), policy["name"], policy["pattern"]),
                    json.dumps(policy["definition"]),
                ]
            )
        url = str(URL(test_infra.amqp_vhost_url(vhost)).with_user(user).with_password(password))
        broker = Broker(url, name="definitions-test")
        broker.start()
        try:
            await broker.wait_ready(timeout=30)  # the topology is declared as this user
            event = upserted("prv_defs", "a1", at(0))
            await broker.publish(topology.ASSETS_EXCHANGE, "asset.upserted", message_for([event]))
        finally:
            await broker.close()
        connection = await aio_pika.connect(url)
        async with connection:
            queue = await (await connection.channel()).declare_queue(
                topology.RECONCILER_QUEUE, passive=True
            )
            message = await queue.get(timeout=10)
            await message.ack()
        listed = await asyncio.to_thread(
            subprocess.check_output,
            ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "policy"],
            text=True,
            timeout=60,
        )
        policies = dict(re.findall(r"^(\S+)\t(\S+)$", listed, re.MULTILINE))
        for queue_name in (topology.RECONCILER_QUEUE, topology.PRICING_QUEUE):
            for name in (queue_name, topology.dead_letter_queue(queue_name)):
                assert policies.get(name) in {p["name"] for p in definitions["policies"]}
    finally:
        ctl(["delete_user", user])
        test_infra.rabbit.delete_vhost(vhost)
