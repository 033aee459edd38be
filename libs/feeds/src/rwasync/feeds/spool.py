"""Spool files: where a feed's body waits on disk while a run (or a preview) reads it.

Each is `rwasync-feed-*.body` in the spool directory (`RWASYNC_FEED_POLLER_SPOOL_DIR`, or the
system's temporary directory), locked by its owner with a shared `flock` before it takes that
name and until the owner `forget`s it. A process killed mid-run leaves its file behind, unlocked,
in a directory that outlives a container restart; `sweep_spool`, run when feed-poller and
ingest-api start, removes exactly those.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger(__name__)


SPOOL_PREFIX: Final = "rwasync-feed-"
SPOOL_SUFFIX: Final = ".body"


def spool_file(spool_dir: str | None) -> tuple[int, Path, int]:
    """A new spool file: (its descriptor for writing, its path, the owner lock's descriptor).
    Made under another name and locked first, so a sweep never sees one of its name unlocked."""
    while True:
        fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=".new", dir=spool_dir)
        held = os.open(name, os.O_RDONLY)
        fcntl.flock(held, fcntl.LOCK_SH)
        path = Path(name).with_suffix(SPOOL_SUFFIX)
        try:
            os.link(name, path)  # never over a file of that name (`rename` would replace it)
        except FileExistsError:
            os.close(fd)
            os.close(held)
            continue
        finally:
            os.unlink(name)
        return fd, path, held


def forget(path: Path, held: int | None) -> None:
    """The owner is done with its spool file: remove it and let go of its lock."""
    path.unlink(missing_ok=True)
    if held is not None:
        os.close(held)


def sweep_spool(spool_dir: str | None = None) -> tuple[int, int]:
    """Remove the spool files no process holds any more, returning (files, bytes).

    A process killed mid-download or mid-run (SIGKILL, the OOM killer) leaves its body behind,
    up to the body cap each, and the spool directory outlives a container restart (an emptyDir, a
    compose volume): without a sweep the leftovers fill the room the next large feed needs. A
    file whose owner lives is locked and stays, whichever process (or service) owns it.
    """
    directory = Path(spool_dir or tempfile.gettempdir())
    files = size = 0
    for path in directory.glob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        try:
            stat = os.fstat(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            path.unlink(missing_ok=True)
            files, size = files + 1, size + stat.st_size
        finally:
            os.close(fd)
    return files, size


def sweep_leftover_spool(spool_dir: str | None = None) -> None:
    """`sweep_spool` at a service's start, logging what a killed predecessor left behind."""
    files, size = sweep_spool(spool_dir)
    if files:
        log.warning("feed.spool_swept", files=files, bytes=size, directory=spool_dir or "")
