"""ingest-api as several processes sharing its port (RWASYNC_INGEST_PROCESSES > 1): the parent
supervises its workers, replacing one that ends, and each worker stops once the parent is gone.
A worker killed was never replaced (the service went on at half its processes, silently), and
a parent killed left its workers serving the port (operator's trial)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Final

import structlog

from rwasync.platform.orphans import when_parent_gone

log = structlog.get_logger(__name__)

# The window in which a worker exiting with an error means the service cannot start; and the
# pause before a worker that ended is replaced, doubling (up to the maximum) while replacements
# keep ending within the steady time.
WORKER_START_SECONDS: Final = 10.0
WORKER_STEADY_SECONDS: Final = 60.0
WORKER_RESTART_DELAY: Final = 1.0
WORKER_RESTART_DELAY_MAX: Final = 30.0


def _work(serve: Callable[[], None], parent_pid: int) -> None:
    """A worker: `serve`, stopping gracefully (as on SIGTERM) once its parent is gone."""
    when_parent_gone(parent_pid, lambda: os.kill(os.getpid(), signal.SIGTERM))
    serve()


def supervise(serve: Callable[[], None], processes: int) -> int:
    """Run `serve` (a module-level function: spawned processes import it) in `processes`
    processes, which bind the port with SO_REUSEPORT while the kernel spreads connections among
    them; this one starts them, passes SIGTERM/SIGINT on, and starts another in place of
    one that ends by itself (it did not: the service went on at half its processes, silently,
    an operator's trial). One that exits with an error within `WORKER_START_SECONDS` of the first
    start (the port taken, say) ends them all, with its exit status: no later one would fare
    better. One killed by a signal is replaced whenever it ends."""
    spawn = multiprocessing.get_context("spawn")
    parent_pid = os.getpid()
    stopping = False

    def start(n: int) -> tuple[multiprocessing.process.BaseProcess, float]:
        worker = spawn.Process(target=_work, args=(serve, parent_pid), name=f"ingest-api-{n}")
        worker.start()
        return worker, time.monotonic()

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker, _started in workers.values():
            if worker.pid is not None and worker.is_alive():
                worker.terminate()

    began = time.monotonic()
    workers = {n: start(n) for n in range(processes)}
    delay = WORKER_RESTART_DELAY
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        multiprocessing.connection.wait([w.sentinel for w, _ in workers.values()], timeout=1.0)
        for n, (worker, started) in list(workers.items()):
            if stopping or worker.is_alive():
                continue
            code = worker.exitcode
            if code is not None and code > 0 and time.monotonic() - began < WORKER_START_SECONDS:
                log.error("an ingest-api process failed to start; stopping", exit_status=code)
                stop(signal.SIGTERM, None)
                for other, _started in workers.values():
                    other.join()
                return code or 1
            if time.monotonic() - started > WORKER_STEADY_SECONDS:
                delay = WORKER_RESTART_DELAY
            log.error(
                "an ingest-api process ended; starting another",
                process=worker.name,
                exit_status=code,
                after=delay,
            )
            pause_until = time.monotonic() + delay
            while not stopping and time.monotonic() < pause_until:  # SIGTERM ends the pause
                time.sleep(0.1)
            delay = min(delay * 2, WORKER_RESTART_DELAY_MAX)
            if not stopping:
                workers[n] = start(n)
    for worker, _started in workers.values():
        worker.join()
    return 0
