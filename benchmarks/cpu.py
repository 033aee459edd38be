"""CPU seconds spent by service processes and the Postgres backends serving them, from
/proc/PID/stat (utime + stime): on a shared machine a cost per event that other processes' load
inflates far less than a wall-clock rate. Shared by the benchmarks that print CPU per event."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of the service processes and of their database backends over an interval."""

    service: float
    database: float

    @property
    def total(self) -> float:
        return self.service + self.database


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_BACKENDS = """
SELECT pid, client_port FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


async def fetch_backends(database_url: str) -> dict[int, int]:
    """The backends serving the database: {backend pid: client port (-1 for a Unix socket)}."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(_BACKENDS)
        return {
            row["pid"]: row["client_port"] if row["client_port"] is not None else -1 for row in rows
        }
    finally:
        await conn.close()


def backend_pids(database_url: str) -> list[int]:
    """Every backend serving the database (from synchronous code)."""
    return list(asyncio.run(fetch_backends(database_url)))


def local_tcp_ports(pid: int) -> set[int]:
    """The local ports of a process's TCP sockets: its sockets' inodes (/proc/PID/fd) matched
    with the kernel's socket tables, so a backend is attributed to the client process that owns
    its connection."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def sample(service_pids: Iterable[int], db_pids: Iterable[int]) -> dict[str, float]:
    """Every process's CPU seconds so far, keyed 'service:PID' or 'db:PID'."""
    taken = {f"db:{pid}": cpu_seconds(pid) for pid in db_pids}
    taken.update({f"service:{pid}": cpu_seconds(pid) for pid in service_pids})
    return taken


def cpu_sample(service_pids: Iterable[int], database_url: str) -> dict[str, float]:
    """The services' and every backend of the database's CPU seconds (from synchronous code)."""
    return sample(service_pids, backend_pids(database_url))


async def own_backends_sample(service_pid: int, database_url: str) -> dict[str, float]:
    """One service process's CPU seconds and those of the backends of its own connections (not
    those of other services on the same database); from asynchronous code."""
    backends = await fetch_backends(database_url)
    ports = local_tcp_ports(service_pid)
    return sample([service_pid], [pid for pid, port in backends.items() if port in ports])


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> Cpu:
    """What each process spent between two samples; processes new in `after` count from zero."""
    spent = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return Cpu(
        service=sum(v for k, v in spent.items() if k.startswith("service:")),
        database=sum(v for k, v in spent.items() if k.startswith("db:")),
    )


def descendants(pid: int) -> list[int]:
    """A process and every process below it (from /proc's children lists)."""
    found = [pid]
    for member in found:
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                found.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def pids_named(name: str) -> list[int]:
    """Every process whose command name (/proc/PID/comm) is `name`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def box_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (all but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


class BoxMeter:
    """Where the machine's CPU went during an interval, by group of processes: each group is a
    callable naming its pids at sampling time; `interval()` gives the seconds per group, the
    whole machine's busy seconds (`box`) and what no group accounts for (`other`)."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]]) -> None:
        self._groups = groups
        self._before: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        taken = {
            name: sum(cpu_seconds(pid) for pid in set(pids()))
            for name, pids in self._groups.items()
        }
        taken["box"] = box_busy_seconds()
        return taken

    def start(self) -> None:
        self._before = self._sample()

    def interval(self) -> dict[str, float]:
        after = self._sample()
        spent = {name: after[name] - self._before.get(name, 0.0) for name in after}
        spent["other"] = spent["box"] - sum(v for k, v in spent.items() if k != "box")
        return spent
