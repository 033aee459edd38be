"""A private RabbitMQ node on spare ports, started from the installed Debian binaries, for tests
that need a broker in a state the shared one must never be put in (here: a memory alarm from the
start, so it blocks every publishing connection)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.system import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def blocked_rabbit(timeout: float = 90) -> Iterator[str]:
    """Yields the AMQP URL of a private node whose memory alarm is raised from the start."""
    if not SERVER.exists():
        raise RuntimeError(f"{SERVER} is missing: install the Debian package rabbitmq-server")
    workdir = Path(tempfile.mkdtemp(prefix="rwasync-rabbit-"))
    port, dist_port = free_port(), free_port()
    (workdir / "enabled_plugins").write_text("[].\n")
    (workdir / "rabbitmq.conf").write_text(
        "vm_memory_high_watermark.absolute = 1\n"
        "loopback_users = none\n"
        f"listeners.tcp.default = {port}\n"
    )
    env = {
        **os.environ,
        "HOME": str(workdir),
        "RABBITMQ_NODENAME": f"rwtest_{uuid.uuid4().hex[:8]}@localhost",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(workdir / "pid"),
    }
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(
        [str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "private RabbitMQ did not start:\n" + (workdir / "server.log").read_text()
                )
            time.sleep(0.3)
        yield f"amqp://guest:guest@127.0.0.1:{port}/"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
