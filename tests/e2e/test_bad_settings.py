"""The real entry points (`python -m rwasync.<service>`, the `rwasync` CLI) refuse bad settings
before doing anything: exit status 2, one `error: VARIABLE: why` line per problem on stderr and
nothing else (no traceback, no log line, no secret), every problem of the environment in the one
run. Neither Postgres nor RabbitMQ is needed: a process that got past its settings would be
caught by the timeout, trying to connect to nothing."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SERVICES = {
    "ingest_api": "RWASYNC_INGEST_",
    "feed_poller": "RWASYNC_FEED_POLLER_",
    "reconciler": "RWASYNC_RECONCILER_",
    "pricing": "RWASYNC_PRICING_",
}
PASSWORD = "hunter2-do-not-print"
SHORT_KEY = base64.urlsafe_b64encode(b"k" * 16).decode()
# Nothing listens here: a process that passed its settings would wait, not connect elsewhere.
NOWHERE_DB = "postgresql://postgres@127.0.0.1:9/rwasync"
NOWHERE_MQ = "amqp://guest:guest@127.0.0.1:9/"


def start(command: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Only this test's settings: none of the caller's RWASYNC_* variables, no `.env`.
    env = {name: value for name, value in os.environ.items() if not name.startswith("RWASYNC_")}
    env |= {
        "RWASYNC_ENV_FILE": os.devnull,
        "RWASYNC_DATABASE_URL": NOWHERE_DB,
        "RWASYNC_AMQP_URL": NOWHERE_MQ,
        **environment,
    }
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def service(name: str) -> list[str]:
    return [sys.executable, "-m", f"rwasync.{name}"]


def cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("rwasync")), *args]


def problems(ended: subprocess.CompletedProcess[str]) -> list[str]:
    """The variables named, in order, once the run is known to be a clean refusal."""
    assert ended.returncode == 2, ended.stderr
    assert ended.stdout == ""
    lines = ended.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), ended.stderr
    assert "Traceback" not in ended.stderr and "validation error" not in ended.stderr
    assert PASSWORD not in ended.stderr and SHORT_KEY not in ended.stderr
    return [line.removeprefix("error: ").split(":", 1)[0] for line in lines]


@pytest.mark.parametrize("name", SERVICES)
def test_a_service_names_every_bad_setting_at_once_and_exits_2(name: str) -> None:
    prefix = SERVICES[name]
    ended = start(
        service(name),
        {
            "RWASYNC_DATABASE_URL": f"mysql://app:{PASSWORD}@db/rwasync",
            "RWASYNC_AMQP_URL": f"amqp://guest:{PASSWORD}@mq:99999/",
            "RWASYNC_LOG_LEVEL": "verbose",
            "RWASYNC_FEED_ALLOWED_NETWORKS": "127.0.0.0/8,10.0.0.300/8",
            "RWASYNC_FEED_SECRETS_KEY": SHORT_KEY,
            f"{prefix}PORT": "80800",
            f"{prefix}PUBLISH_TIMEOUT": "soon",
            f"{prefix}DB_POOL_MIN": "20",
            f"{prefix}DB_POOL_MAX": "10",
        },
    )
    assert problems(ended) == [
        "RWASYNC_DATABASE_URL",
        "RWASYNC_AMQP_URL",
        "RWASYNC_LOG_LEVEL",
        "RWASYNC_FEED_ALLOWED_NETWORKS",
        "RWASYNC_FEED_SECRETS_KEY",
        f"{prefix}PORT",
        f"{prefix}PUBLISH_TIMEOUT",
        f"{prefix}DB_POOL_MIN",
    ]
    assert "'10.0.0.300/8' is not a CIDR range" in ended.stderr
    assert "amqp://guest:***@mq:99999/" in ended.stderr
    assert "make one with `rwasync feed secrets-key`" in ended.stderr
    assert f"must be at most {prefix}DB_POOL_MAX (10) (got '20')" in ended.stderr


def test_one_bad_setting_is_one_line() -> None:
    ended = start(service("reconciler"), {"RWASYNC_RECONCILER_APPLY_LINGER": "2"})
    assert problems(ended) == ["RWASYNC_RECONCILER_APPLY_LINGER"]
    assert ended.stderr == "error: RWASYNC_RECONCILER_APPLY_LINGER: must be at most 1 (got '2')\n"


def test_a_service_reads_bad_settings_from_its_env_file_the_same_way(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("RWASYNC_FEED_POLLER_POLL_INTERVAL=30\nRWASYNC_TRUSTED_PROXIES=gw\n")
    ended = start(service("feed_poller"), {"RWASYNC_ENV_FILE": str(env_file)})
    assert problems(ended) == ["RWASYNC_TRUSTED_PROXIES", "RWASYNC_FEED_POLLER_POLL_INTERVAL"]


@pytest.mark.parametrize("command", [("migrate",), ("status", "--json"), ("provider", "list")])
def test_the_cli_refuses_bad_settings_before_its_command(command: tuple[str, ...]) -> None:
    ended = start(
        cli(*command),
        {
            "RWASYNC_DATABASE_URL": f"127.0.0.1:5432/rwasync?password={PASSWORD}",
            "RWASYNC_LOG_LEVEL": "loud",
            "RWASYNC_FEED_SECRETS_KEY": SHORT_KEY,
            "RWASYNC_RABBITMQ_MANAGEMENT_URL": f"mq:15672 user:{PASSWORD}",
        },
    )
    assert problems(ended) == [
        "RWASYNC_DATABASE_URL",
        "RWASYNC_LOG_LEVEL",
        "RWASYNC_FEED_SECRETS_KEY",
        "RWASYNC_RABBITMQ_MANAGEMENT_URL",
    ]
