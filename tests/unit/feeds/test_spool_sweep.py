"""Spool files left by a killed process are swept when a service starts, however young; a live
owner's file, whichever process owns it, stays (review: a SIGKILLed or OOM-killed poller left up
to 512 MiB per run in a /tmp that outlives a container restart, so the next large feed found no
room)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rwasync.feeds.fetch import Downloaded, Validators
from rwasync.feeds.spool import SPOOL_PREFIX, SPOOL_SUFFIX, spool_file, sweep_spool
from rwasync.schema.timestamps import utc_now

pytestmark = pytest.mark.unit

OWNER = """
import sys, time
from rwasync.feeds.spool import spool_file
fd, path, held = spool_file(sys.argv[1])
with open(fd, "wb") as out:
    out.write(b"x" * 1000)
print(path, flush=True)
time.sleep(60)
"""


def owned_by_a_child(directory: Path) -> tuple[subprocess.Popen[str], Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip())


def test_a_killed_owners_file_is_swept_and_a_live_owners_stays(tmp_path: Path) -> None:
    live, live_file = owned_by_a_child(tmp_path)
    killed, killed_file = owned_by_a_child(tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        # At once: a restarted service comes back within seconds of the kill.
        assert sweep_spool(str(tmp_path)) == (1, 1000)
        assert live_file.exists() and not killed_file.exists()
    finally:
        live.kill()
        live.wait(timeout=30)


def test_this_process_keeps_its_own_file_until_it_discards_it(tmp_path: Path) -> None:
    fd, path, held = spool_file(str(tmp_path))
    os.close(fd)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # under its final name only
    assert path.name.startswith(SPOOL_PREFIX) and path.name.endswith(SPOOL_SUFFIX)
    assert sweep_spool(str(tmp_path)) == (0, 0) and path.exists()
    downloaded = Downloaded(
        url="http://x/", not_modified=False, started_at=utc_now(), tries=1,
        validators=Validators(), path=path, held=held,
    )  # fmt: skip
    downloaded.discard()
    assert not path.exists()
    with pytest.raises(OSError):
        os.fstat(held)  # the owner lock is released with the file


def test_files_of_other_names_are_left_alone(tmp_path: Path) -> None:
    leftover = tmp_path / f"{SPOOL_PREFIX}leftover{SPOOL_SUFFIX}"
    leftover.write_bytes(b"left by a killed run")
    others = [tmp_path / "rwasync-other.body", tmp_path / f"{SPOOL_PREFIX}x.new"]
    for other in others:
        other.write_bytes(b"not a spool file")
    assert sweep_spool(str(tmp_path)) == (1, len(b"left by a killed run"))
    assert not leftover.exists() and all(other.exists() for other in others)
