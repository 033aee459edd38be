"""The fuzz targets under atheris, coverage-guided, for a bounded number of inputs each (slow):
no input may crash a target (only its documented errors), take over 5 s, or grow the process
beyond 1 GiB — libFuzzer enforces the last two and exits non-zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]
RUNS = 200_000
SECONDS = 90


@pytest.mark.parametrize("target", ["json", "asset", "feed", "gzip"])
def test_no_input_crashes_hangs_or_bloats_a_parser(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.unit.fuzz.atheris_targets", target,
            f"-runs={RUNS}", f"-max_total_time={SECONDS}", "-timeout=5", "-rss_limit_mb=1024",
            "-max_len=65536", f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120, check=False,
    )  # fmt: skip
    tail = "\n".join(result.stderr.splitlines()[-40:])
    assert result.returncode == 0, tail
    assert "Done" in tail, tail
    print(f"{target}: {tail.splitlines()[-1]}")
