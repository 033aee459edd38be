"""A scratch database and vhost for one benchmark run, with the services on them, removed after."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.support.system import System

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def scratch_system(*, keep: bool = False, **env: str) -> Iterator[System]:
    """A `System` on a new database and vhost; its services are stopped and both dropped after
    (unless `keep`). `env` adds settings for the services it starts."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
    )
    system = System(
        f"postgresql://postgres@127.0.0.1:5432/{name}",
        f"amqp://guest:guest@127.0.0.1:5672/{name}",
        Path(tempfile.mkdtemp(prefix="rwasync-bench-")),
        extra_env=dict(env),
    )
    try:
        yield system
    finally:
        system.stop_all()
        if not keep:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)
            subprocess.run(
                ["psql", ADMIN_DSN, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                check=False,
            )
