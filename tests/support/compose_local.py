"""docker-compose.yml run without Docker: each service's own command (its image's ENTRYPOINT plus
the compose `command`) and its own environment as compose resolves it (`docker-compose config`),
as local processes against the local Postgres and RabbitMQ. Only what cannot exist outside Docker
is rewritten: the server host names (`postgres`, `rabbitmq`) become the test's own database and
vhost on 127.0.0.1, and every replica listens on a port of its own instead of its container's."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yarl import URL

from tests.support.deployment import (
    CADDYFILE,
    entrypoint,
    env_prefix,
    image_services,
    settings_class,
)
from tests.support.system import ServiceProcess, free_port, http_status

VENV_BIN = Path(sys.prefix) / "bin"


@dataclass
class LocalCompose:
    resolved: dict[str, Any]  # `docker-compose config`
    database_url: str  # the test's own database, standing in for `postgres`
    amqp_url: str  # the test's own vhost, standing in for `rabbitmq`
    workdir: Path
    replicas: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    gateway: subprocess.Popen[bytes] | None = None
    gateway_port: int = 0

    def service(self, name: str) -> dict[str, Any]:
        service: dict[str, Any] = self.resolved["services"][name]
        return service

    def command(self, name: str) -> list[str]:
        """The service's command line, its console script taken from the virtualenv (the image
        puts its own virtualenv first on PATH the same way)."""
        argv = entrypoint(image_services()[name]) + list(self.service(name).get("command", []))
        script = VENV_BIN / argv[0]
        assert script.exists(), f"{name}: {argv[0]} is not installed"
        return [str(script), *argv[1:]]

    def environment(self, name: str) -> dict[str, str]:
        env = {k: str(v) for k, v in self.service(name).get("environment", {}).items()}
        for key, host, local in (
            ("RWASYNC_DATABASE_URL", "postgres", self.database_url),
            ("RWASYNC_AMQP_URL", "rabbitmq", self.amqp_url),
        ):
            assert URL(env[key]).host == host, f"{name}: {key} does not point at {host}"
            env[key] = local
        return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(self.workdir), **env}

    def run(self, name: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """A one-shot service (migrate, cli): its command, then `args`, to its end."""
        return subprocess.run(
            [*self.command(name), *args],
            env=self.environment(name),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, name: str, count: int) -> list[ServiceProcess]:
        """`count` replicas of a long-running service, each on a port of its own."""
        port_variable = env_prefix(settings_class(entrypoint(image_services()[name])[0])) + "PORT"
        started = []
        for index in range(count):
            folder = self.workdir / f"{name}-{index + 1}"
            folder.mkdir()
            port = free_port()
            env = {**self.environment(name), port_variable: str(port)}
            replica = ServiceProcess(
                f"{name}-{index + 1}", port, env, folder / "log", argv=self.command(name)
            )
            replica.start()
            started.append(replica)
        self.replicas[name] = started
        return started

    def wait_healthy(self, name: str, timeout: float = 180) -> None:
        """Run the service's own compose health check (its port rewritten) until it passes."""
        test = list(self.service(name)["healthcheck"]["test"])
        assert test[0] == "CMD", f"{name}: health check must be exec form"
        for replica in self.replicas[name]:
            argv = [str(VENV_BIN / test[1]), *test[2:-1]]
            argv.append(str(URL(test[-1]).with_port(replica.port)))
            deadline = time.monotonic() + timeout
            while True:
                if replica.process is None or replica.process.poll() is not None:
                    raise AssertionError(f"{replica.name} exited:\n{replica.log_tail()}")
                check = subprocess.run(argv, capture_output=True, timeout=30, check=False)
                if check.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{replica.name} never healthy:\n{replica.log_tail()}")
                time.sleep(0.5)

    def start_gateway(self, caddy: str) -> str:
        """The gateway's Caddyfile with each upstream's DNS name replaced by its replicas' local
        addresses and its site on a free local port; returns the gateway's base URL."""
        container_port = int(self.service("gateway")["ports"][0]["target"])
        text = CADDYFILE.read_text()

        def local_upstreams(match: re.Match[str]) -> str:
            name, port = match.group(1), int(match.group(2))
            environment = self.service(name)["environment"]
            assert any(k.endswith("_PORT") and int(v) == port for k, v in environment.items())
            return "to " + " ".join(f"127.0.0.1:{r.port}" for r in self.replicas[name])

        text, upstreams = re.subn(r"dynamic a (\S+) (\d+) \{[^}]*\}", local_upstreams, text)
        assert upstreams >= 2, "the gateway's upstreams were not found"
        self.gateway_port = free_port()
        site = f"http://127.0.0.1:{self.gateway_port} {{"
        text, sites = re.subn(rf"^http://:{container_port} \{{", site, text, flags=re.MULTILINE)
        assert sites == 1, f"the Caddyfile serves no site on the container's port {container_port}"
        config = self.workdir / "Caddyfile"
        config.write_text(text)
        log = (self.workdir / "gateway.log").open("ab")
        home = str(self.workdir)
        self.gateway = subprocess.Popen(
            [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
            env={"HOME": home, "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        base = f"http://127.0.0.1:{self.gateway_port}"
        deadline = time.monotonic() + 60
        while http_status(base + "/healthz") != 200:
            assert self.gateway.poll() is None, (self.workdir / "gateway.log").read_text()
            assert time.monotonic() < deadline, "the gateway never answered /healthz"
            time.sleep(0.2)
        return base

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.terminate()
            self.gateway.wait(15)
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.stop()

    def logs(self) -> str:
        return "\n\n".join(
            f"== {r.name} ==\n{r.log_tail()}" for rs in self.replicas.values() for r in rs
        )
