"""The feed poller's validation workers end with their poller, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# A poller stand-in: starts the pool, prints its workers' pids once they run, then waits.
POLLER = """
import sys, time
from rwasync.feed_poller.validation import ItemValidator
validator = ItemValidator(2, 1024)
validator.start()
pool = validator._started()
deadline = time.monotonic() + 60
while len(pool._processes) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
print(" ".join(str(pid) for pid in pool._processes), flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_exit_when_their_poller_is_killed_outright() -> None:
    """`kill -9` of a poller left its workers running, re-parented and holding its output pipes,
    so `make run`'s supervisor never saw the poller end (an operator's trial)."""
    workers: list[int] = []
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert poller.stdout is not None
        workers += [int(pid) for pid in poller.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        os.kill(poller.pid, signal.SIGKILL)
        poller.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), workers
    finally:
        poller.kill()
        poller.wait(timeout=10)
        for pid in workers:  # without the watch they would outlive the test too
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
