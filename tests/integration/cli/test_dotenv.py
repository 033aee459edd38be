"""A bare `rwasync` call acts on the system `make run` started: it takes its settings from `.env`
in the working directory, with nothing exported, and the environment still wins over the file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

FEED_URL = "http://127.0.0.1:9000/feed.json"


def bare_rwasync(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it in a second terminal: no RWASYNC_* variable exported."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RWASYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "rwasync.cli", *args],
        cwd=workdir,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_feed_add_reads_the_allow_list_and_database_from_dotenv(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "# as make run writes it\n"
        f"RWASYNC_DATABASE_URL={database_url}\n"
        "RWASYNC_FEED_ALLOWED_NETWORKS=127.0.0.0/8,::1\n"
    )
    created = await asyncio.to_thread(bare_rwasync, tmp_path, "provider", "create", "A", "--json")
    assert created.returncode == 0, created.stderr
    provider_id = json.loads(created.stdout)["provider_id"]

    added = await asyncio.to_thread(
        bare_rwasync, tmp_path, "feed", "add", provider_id, FEED_URL, "--format", "json", "--json"
    )
    assert added.returncode == 0, added.stderr
    feed = json.loads(added.stdout)
    assert feed["url"] == FEED_URL and feed["provider_id"] == provider_id

    # A variable in the environment wins over the file: with no allow-list, loopback is refused.
    refused = await asyncio.to_thread(
        bare_rwasync,
        tmp_path,
        "feed",
        "add",
        provider_id,
        FEED_URL,
        "--json",
        env={"RWASYNC_FEED_ALLOWED_NETWORKS": ""},
    )
    assert refused.returncode == 1 and "/url" in refused.stderr
    assert "not a public address" in refused.stderr


async def test_without_dotenv_the_cli_refuses_loopback_feeds(
    database_url: str, tmp_path: Path
) -> None:
    created = await asyncio.to_thread(
        bare_rwasync,
        tmp_path,
        "provider",
        "create",
        "A",
        "--json",
        env={"RWASYNC_DATABASE_URL": database_url},
    )
    provider_id = json.loads(created.stdout)["provider_id"]
    refused = await asyncio.to_thread(
        bare_rwasync,
        tmp_path,
        "feed",
        "add",
        provider_id,
        FEED_URL,
        "--json",
        env={"RWASYNC_DATABASE_URL": database_url},
    )
    assert refused.returncode == 1 and "not a public address" in refused.stderr
