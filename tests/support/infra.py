"""Where the tests find Postgres and RabbitMQ, and how each test gets isolated state.

Order: addresses from the environment (RWASYNC_TEST_POSTGRES_URL, RWASYNC_TEST_AMQP_URL; `make
test` sets them to the local services), else testcontainers when a Docker engine answers, else a
clear failure: a skipped test proves nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg
import pytest
from yarl import URL

NO_SERVICES = (
    "rwasync tests need PostgreSQL and RabbitMQ. Set RWASYNC_TEST_POSTGRES_URL (an admin DSN, e.g. "
    "postgresql://postgres@127.0.0.1:5432/postgres) and RWASYNC_TEST_AMQP_URL (e.g. "
    "amqp://guest:guest@127.0.0.1:5672/), run `make test` (which sets both and starts the local "
    "services), or start a Docker engine for testcontainers."
)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@dataclass
class RabbitAdmin:
    """Creates and deletes vhosts: with the local rabbitmqctl, or inside a test container."""

    run: Callable[[list[str]], None]
    created: list[str] = field(default_factory=list)

    def add_vhost(self, name: str) -> None:
        self.run(["add_vhost", name])
        self.run(["set_permissions", "-p", name, "guest", ".*", ".*", ".*"])
        self.created.append(name)

    def delete_vhost(self, name: str) -> None:
        self.run(["delete_vhost", name])


def _local_rabbitmqctl(args: list[str]) -> None:
    ctl = os.environ.get("RWASYNC_TEST_RABBITMQCTL", "rabbitmqctl")
    if shutil.which(ctl) is None:
        pytest.fail(f"{ctl} not found: needed to create test vhosts", pytrace=False)
    subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60)


@dataclass
class Infra:
    postgres_admin_url: str
    amqp_url: str
    rabbit: RabbitAdmin

    def database_url(self, name: str) -> str:
        return str(URL(self.postgres_admin_url).with_path("/" + name))

    def amqp_vhost_url(self, vhost: str) -> str:
        return str(URL(self.amqp_url).with_path("/" + vhost, encoded=False))


@contextmanager
def infra() -> Iterator[Infra]:
    pg = os.environ.get("RWASYNC_TEST_POSTGRES_URL")
    amqp = os.environ.get("RWASYNC_TEST_AMQP_URL")
    if pg and amqp:
        yield Infra(pg, amqp, RabbitAdmin(_local_rabbitmqctl))
        return
    if not _docker_answers():
        pytest.fail(NO_SERVICES, pytrace=False)
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    with (
        PostgresContainer("postgres:16", driver=None) as pg_c,
        RabbitMqContainer("rabbitmq:3.13") as mq_c,
    ):

        def container_ctl(args: list[str]) -> None:
            code, out = mq_c.exec(["rabbitmqctl", "-q", *args])
            if code != 0:
                raise RuntimeError(out)

        params = mq_c.get_connection_params()
        yield Infra(
            pg_c.get_connection_url(),
            f"amqp://guest:guest@{params.host}:{params.port}/",
            RabbitAdmin(container_ctl),
        )


async def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
