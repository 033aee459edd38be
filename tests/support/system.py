"""The real services as processes, for end-to-end tests: each on a free port of 127.0.0.1, all on
a test database and vhost of their own, with logs kept to show when a test fails."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVICES = {
    "ingest-api": ("rwasync.ingest_api", "RWASYNC_INGEST_PORT"),
    "feed-poller": ("rwasync.feed_poller", "RWASYNC_FEED_POLLER_PORT"),
    "reconciler": ("rwasync.reconciler", "RWASYNC_RECONCILER_PORT"),
    "pricing": ("rwasync.pricing", "RWASYNC_PRICING_PORT"),
}
CLI = [sys.executable, "-m", "rwasync.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    # A command of its own (its environment then sets the port); else `python -m` the service.
    argv: list[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.argv is None:
            module, port_var = SERVICES[self.name]
            argv, env = [sys.executable, "-m", module], {**self.env, port_var: str(self.port)}
            cwd = None
        else:  # as in a container: nothing but its environment, in a folder of its own
            argv, env, cwd = self.argv, self.env, self.log_path.parent
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait(self, path: str = "/readyz", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if http_status(self.url + path) == 200:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not answering 200 on {path}:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        code = self.process.returncode
        self.process = None
        return code

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class System:
    database_url: str
    amqp_url: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("RWASYNC_")}
        return {
            **keep,
            # Never the developer's .env (make run's): the services start in the repository.
            "RWASYNC_ENV_FILE": os.devnull,
            "RWASYNC_DATABASE_URL": self.database_url,
            "RWASYNC_AMQP_URL": self.amqp_url,
            "RWASYNC_LOG_FORMAT": "json",
            "RWASYNC_FEED_ALLOWED_NETWORKS": "127.0.0.0/8,::1",
            "RWASYNC_FEED_POLLER_RETRY_DELAY": "0.5",
            "RWASYNC_FEED_POLLER_POLL_INTERVAL": "0.5",
            **self.extra_env,
        }

    def start(self, *names: str) -> None:
        for name in names or tuple(SERVICES):
            service = self.services.get(name) or ServiceProcess(
                name, free_port(), self.env, self.workdir / f"{name}.log"
            )
            self.services[name] = service
            service.start()
        for name in names or tuple(SERVICES):
            self.services[name].wait()

    def url(self, name: str) -> str:
        return self.services[name].url

    def stop_all(self) -> None:
        for service in self.services.values():
            service.stop()

    def logs(self) -> str:
        return "\n\n".join(f"== {s.name} ==\n{s.log_tail()}" for s in self.services.values())

    def cli(self, *args: str, check: bool = True) -> tuple[int, Any]:
        """Run the operator CLI; returns (exit code, the one JSON document it printed or None)."""
        result = subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, timeout=180, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"rwasync {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}"
            )
        out = result.stdout.decode().strip()
        return result.returncode, json.loads(out) if out else None
