"""Where the tests find Postgres and RabbitMQ, and how each test gets isolated state.

Order: addresses from the environment (RWASYNC_TEST_POSTGRES_URL, RWASYNC_TEST_AMQP_URL; `make
test` sets them to the local services), else testcontainers when a Docker engine answers, else a
clear failure: a skipped test proves nothing.
"""

from __future__ import annotations

import os
import re
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


# What `add_vhost` and `delete_vhost` do, in one `rabbitmqctl eval` each (Erlang, the broker's own
# calls behind `add_vhost`, `set_permissions` and `delete_vhost`). Each rabbitmqctl run boots an
# Erlang VM (~0.5 s, 0.6 CPU-s here); three per test were ~1.7 s of every test with a vhost.
_ACTOR = '<<"rwasync-tests">>'
_ADD = (
    'ok = rabbit_vhost:add(<<"{name}">>, ' + _ACTOR + "), "
    'ok = rabbit_auth_backend_internal:set_permissions(<<"guest">>, <<"{name}">>, '
    '<<".*">>, <<".*">>, <<".*">>, ' + _ACTOR + "), ok."
)
_DELETE = "[rabbit_vhost:delete(V, " + _ACTOR + ") || V <- [{names}]], ok."
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Deletions wait for this many vhosts and go in one run: a few idle vhosts linger meanwhile.
DELETE_BATCH = 8


@dataclass
class RabbitAdmin:
    """Creates and deletes vhosts: with the local rabbitmqctl, or inside a test container. One
    `rabbitmqctl eval` adds a vhost with guest's permissions, and deletions are batched (`flush`
    deletes the rest); where `eval` fails (another broker version), the plain commands do it."""

    run: Callable[[list[str]], None]
    created: list[str] = field(default_factory=list)
    _to_delete: list[str] = field(default_factory=list)
    _eval_works: bool = True

    def add_vhost(self, name: str) -> None:
        if not self._eval(_ADD.format(name=name), name):
            self.run(["add_vhost", name])
            self.run(["set_permissions", "-p", name, "guest", ".*", ".*", ".*"])
        self.created.append(name)

    def delete_vhost(self, name: str) -> None:
        if not self._eval_works or _PLAIN_NAME.fullmatch(name) is None:
            self.run(["delete_vhost", name])
            return
        self._to_delete.append(name)
        if len(self._to_delete) >= DELETE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Delete the vhosts whose deletion is waiting."""
        names, self._to_delete = self._to_delete, []
        if not names:
            return
        listed = ", ".join(f'<<"{name}">>' for name in names)
        if not self._eval(_DELETE.format(names=listed), *names):
            for name in names:
                self.run(["delete_vhost", name])

    def _eval(self, erlang: str, *names: str) -> bool:
        if not self._eval_works or any(_PLAIN_NAME.fullmatch(n) is None for n in names):
            return False
        try:
            self.run(["eval", erlang])
        except (subprocess.CalledProcessError, RuntimeError):
            self._eval_works = False
            return False
        return True


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
        rabbit = RabbitAdmin(_local_rabbitmqctl)
        try:
            yield Infra(pg, amqp, rabbit)
        finally:
            rabbit.flush()
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
        rabbit = RabbitAdmin(container_ctl)
        try:
            yield Infra(
                pg_c.get_connection_url(),
                f"amqp://guest:guest@{params.host}:{params.port}/",
                rabbit,
            )
        finally:
            rabbit.flush()


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
