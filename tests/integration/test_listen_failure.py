"""A service that cannot listen (its port held by another process) says so in one log line
naming its settings and exits 1: it ended with a traceback, no JSON line, after connecting
(operator trial)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", ["pricing", "reconciler"])
def test_a_port_in_use_is_one_error_line_naming_the_settings(service: str) -> None:
    prefix = f"RWASYNC_{service.upper()}_"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        environment = {
            **os.environ,
            "RWASYNC_ENV_FILE": "/dev/null",
            "RWASYNC_LOG_FORMAT": "json",
            "RWASYNC_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
            "RWASYNC_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}PORT": str(port),
        }
        done = subprocess.run(
            [str(Path(sys.executable).parent / f"rwasync-{service}")],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1, done.stderr[-2000:]
    output = (done.stdout + done.stderr).strip()
    assert "Traceback" not in output, output[-2000:]
    last = json.loads(output.splitlines()[-1])
    assert last["level"] == "error" and last["event"].startswith("cannot listen"), last
    assert last["address"] == f"127.0.0.1:{port}"
    assert last["settings"] == f"{prefix}HOST, {prefix}PORT"
