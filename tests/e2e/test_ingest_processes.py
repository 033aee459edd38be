"""ingest-api with `RWASYNC_INGEST_PROCESSES` > 1, as a real process: its supervisor replaces a
worker that ends, and its workers stop when it is gone (an operator's trial: a worker killed was
never replaced, and a supervisor killed left its workers serving the port)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import own_system
from tests.support.infra import Infra
from tests.support.system import System, http_status
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def workers(parent: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("PPid:"))
        if ppid == parent and b"spawn_main" in cmdline:
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


@pytest.fixture
def processes(test_infra: Infra, template_database: str, tmp_path: Path) -> Iterator[System]:
    with own_system(
        test_infra,
        template_database,
        tmp_path,
        extra_env={"RWASYNC_INGEST_PROCESSES": "2"},
        services=("ingest-api",),
    ) as system:
        yield system


async def test_the_supervisor_replaces_a_worker_and_its_workers_end_with_it(
    processes: System,
) -> None:
    system = processes
    service = system.services["ingest-api"]
    assert service.process is not None
    parent = service.process.pid
    first = await eventually(
        lambda: asyncio.to_thread(workers, parent), lambda found: len(found) == 2
    )
    killed = min(first)
    os.kill(killed, signal.SIGKILL)
    replaced = await eventually(
        lambda: asyncio.to_thread(workers, parent),
        lambda found: len(found) == 2 and killed not in found,
        timeout=60,
        what="a new worker in place of the one killed",
    )
    await eventually(
        lambda: asyncio.to_thread(http_status, f"{service.url}/readyz"),
        lambda status: status == 200,
    )
    assert "an ingest-api process ended; starting another" in service.log_tail()

    os.kill(parent, signal.SIGKILL)
    await eventually(
        lambda: asyncio.to_thread(lambda: [pid for pid in replaced if alive(pid)]),
        lambda left: not left,
        timeout=60,
        what="the workers to stop without their supervisor",
    )
    assert http_status(f"{service.url}/healthz") is None
