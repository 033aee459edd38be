"""Disposable RabbitMQ nodes and Postgres clusters on spare local ports, started from the installed
Debian binaries, so fault tests may `kill -9` and restart them freely without touching the shared
servers every other test uses.

Both run as their packages' system users (`rabbitmq`, `postgres`), as the packaged servers do:
Postgres refuses to run as root, and a RabbitMQ node needs the `rabbitmq` user's Erlang cookie
for `rabbitmqctl` to reach it. Everything lives in one work directory, removed on `destroy()`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
LOCAL = "127.0.0.1"


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


def spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _as_user(user: str, args: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        ["runuser", "-u", user, "--", *args], text=True, capture_output=True, **kwargs
    )


def _wait(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} within {timeout:.0f} s")


def _workdir(prefix: str, owner: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(path, owner, owner)
    path.chmod(0o700)
    return path


# --- RabbitMQ -----------------------------------------------------------------------------------


@dataclass
class PrivateRabbit:
    """One RabbitMQ node, `<name>@localhost`, listening on 127.0.0.1:`port`."""

    name: str
    port: int = field(default_factory=spare_port)
    dist_port: int = field(default_factory=spare_port)
    workdir: Path = field(default_factory=lambda: _workdir("rwasync-rabbit-", "rabbitmq"))
    _process: subprocess.Popen[bytes] | None = None

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    def url(self, vhost: str = "/") -> str:
        path = "" if vhost == "/" else vhost
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{path}"

    def _env(self) -> dict[str, str]:
        base = self.workdir
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            # Alarms are set by the tests themselves (rabbitmqctl), never by this machine's load.
            "vm_memory_high_watermark.relative = 0.9\n"
            "disk_free_limit.absolute = 1MB\n"
        )
        (base / "rabbitmq-env.conf").write_text("")
        (base / "enabled_plugins").write_text("[].\n")
        for path in base.iterdir():
            shutil.chown(path, "rabbitmq", "rabbitmq")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/var/lib/rabbitmq",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 90) -> None:
        """Start (or restart after a kill) and wait until the node accepts AMQP connections."""
        if self._process is not None and self._process.poll() is None:
            return
        log = (self.workdir / "console.log").open("ab")
        self._process = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self._env(),
            user="rabbitmq",
            group="rabbitmq",
            extra_groups=[],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait(lambda: self.ctl("await_startup", check=False).returncode == 0, self.node, timeout)
        _wait(lambda: answers(self.port), f"{self.node} on port {self.port}", timeout)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = _as_user(
            "rabbitmq",
            [str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", self.node, *args],
            env={**self._env(), "HOME": "/var/lib/rabbitmq"},
            timeout=60,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr or result.stdout}")
        return result

    def add_vhost(self, vhost: str) -> str:
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.url(vhost)

    def kill9(self) -> None:
        """SIGKILL the whole node (the Erlang VM and its helpers), as a crash would."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(10)
        self._process = None
        _wait(lambda: not answers(self.port), f"{self.node} to go away", 20)

    def stop(self) -> None:
        if self._process is None:
            return
        self.ctl("stop", check=False)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()
        self._process = None

    def memory_alarm(self, on: bool) -> None:
        """Raise (or clear) the memory alarm: the node blocks every publishing connection."""
        self.ctl("set_vm_memory_high_watermark", "0.000001" if on else "0.9")

    def disk_alarm(self, on: bool) -> None:
        """Raise (or clear) the disk alarm: the node blocks every publishing connection."""
        self.ctl("set_disk_free_limit", "1000000GB" if on else "1MB")

    def destroy(self) -> None:
        self.kill9()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class RabbitCluster:
    """Several private nodes joined into one cluster (quorum queues span them all)."""

    nodes: list[PrivateRabbit]

    @classmethod
    def start(cls, size: int = 3, prefix: str = "rwcluster") -> RabbitCluster:
        tag = os.urandom(3).hex()
        nodes = [PrivateRabbit(f"{prefix}{i}-{tag}") for i in range(1, size + 1)]
        cluster = cls(nodes)
        try:
            for node in nodes:
                node.start()
            first = nodes[0]
            for node in nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", first.node)
                node.ctl("start_app")
                node.ctl("await_startup")
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def urls(self, vhost: str = "/") -> list[str]:
        return [node.url(vhost) for node in self.nodes]

    def amqp_setting(self, vhost: str = "/") -> str:
        """The services' RWASYNC_AMQP_URL for this cluster: every node, comma-separated."""
        return ",".join(self.urls(vhost))

    def running(self) -> list[PrivateRabbit]:
        return [node for node in self.nodes if node._process is not None]

    def leader(self, queue: str, vhost: str = "/") -> PrivateRabbit | None:
        """The node leading a quorum queue now (asked of any running node), or None."""
        for asker in self.running():
            result = asker.ctl("list_queues", "-p", vhost, "name", "leader", check=False)
            if result.returncode != 0:
                continue
            for line in result.stdout.splitlines():
                name, _, leader = line.partition("\t")
                if name == queue:
                    return next((n for n in self.nodes if n.node == leader.strip()), None)
        return None

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()


# --- Postgres -----------------------------------------------------------------------------------


@dataclass
class PrivatePostgres:
    """One Postgres cluster on 127.0.0.1:`port`, trust authentication for `postgres`.

    The postmaster is this process's own child (started as the `postgres` user, not through
    pg_ctl), so a killed one is reaped at once and leaves no live-looking pid behind.
    """

    port: int = field(default_factory=spare_port)
    workdir: Path = field(default_factory=lambda: _workdir("rwasync-pg-", "postgres"))
    # Another address to listen on, and the network allowed to connect there (trust), e.g. the
    # root end of a veth pair whose other end is in a network namespace (tests.support.netns).
    extra_listen: str = ""
    extra_network: str = ""
    _process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        if not (self.data / "PG_VERSION").exists():
            result = _as_user(
                "postgres",
                [str(_pg_bin() / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8"],
                timeout=120,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed: {result.stderr or result.stdout}")
            if self.extra_network:
                with (self.data / "pg_hba.conf").open("a") as hba:
                    hba.write(f"host all all {self.extra_network} trust\n")
        log = (self.workdir / "server.log").open("ab")
        self._process = subprocess.Popen(
            [
                str(_pg_bin() / "postgres"), "-D", str(self.data),
                "-c", f"listen_addresses={','.join(filter(None, [LOCAL, self.extra_listen]))}",
                "-c", f"port={self.port}",
                "-c", f"unix_socket_directories={self.workdir}", "-c", "max_connections=200",
                # A killed server loses nothing a commit returned for (the WAL reaches the OS
                # before the commit returns); only a machine crash could, which no test makes.
                "-c", "fsync=off",
            ],
            user="postgres",
            group="postgres",
            extra_groups=[],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()

        def ready() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.workdir / 'server.log').read_text()}")
            return answers(self.port)

        _wait(ready, f"postgres on port {self.port}", timeout)

    def kill9(self) -> None:
        """SIGKILL the postmaster and every backend, as a crash would; the next start recovers."""
        if self._process is None:
            return
        subprocess.run(["pkill", "-KILL", "-P", str(self._process.pid)], check=False)
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._process.wait(20)
        self._process = None
        _wait(lambda: not answers(self.port), "postgres to go away", 20)

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended, the cluster shuts down cleanly."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.kill9()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def private_rabbit(name: str = "rwfault") -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(f"{name}-{os.urandom(3).hex()}")
    try:
        node.start()
        yield node
    finally:
        node.destroy()


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@contextlib.contextmanager
def blocked_rabbit() -> Iterator[str]:
    """The AMQP URL of a private node whose memory alarm is raised: it blocks every connection
    that publishes, as a broker short of memory or disk does."""
    with private_rabbit("rwblocked") as node:
        node.memory_alarm(True)
        yield node.url()
