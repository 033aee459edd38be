"""Progress on the CLI's long operations: on a terminal (TTY_COMPATIBLE=1 stands in for one) a
replay of thousands of dead letters and a wait for a feed run report how far they are on stderr;
in a pipe they do not, and `--json` keeps stdout to its one document either way."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import aio_pika
import asyncpg
import pytest

from rwasync.platform.broker import Broker
from rwasync.schema import topology

pytestmark = pytest.mark.integration

DEAD_LETTERS = 2000


def rwasync(
    database_url: str, amqp_url: str, *args: str, terminal: bool
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RWASYNC_")}
    env |= {
        "RWASYNC_ENV_FILE": os.devnull,  # never the developer's .env (make run's)
        "RWASYNC_DATABASE_URL": database_url,
        "RWASYNC_FEED_ALLOWED_NETWORKS": "127.0.0.0/8",
        "TTY_COMPATIBLE": "1" if terminal else "0",
    }
    if amqp_url:  # "": a command that needs no broker; the default URL stands
        env["RWASYNC_AMQP_URL"] = amqp_url
    return subprocess.run(
        [sys.executable, "-m", "rwasync.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_replaying_thousands_of_dead_letters_shows_progress(
    database_url: str, vhost_amqp_url: str, broker: Broker
) -> None:
    assert broker.is_ready()  # the topology is declared: the replays have a queue to land in
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO dead_letters (message_id, queue, body, reason, dead_lettered_at)"
            " SELECT 'dl-' || i, $1, convert_to('{\"n\":' || i || '}', 'UTF8'), 'poison', $2"
            " FROM generate_series(1, $3) AS i",
            topology.RECONCILER_QUEUE,
            datetime.now(UTC),
            DEAD_LETTERS,
        )
    finally:
        await conn.close()
    done = await asyncio.to_thread(
        rwasync, database_url, vhost_amqp_url, "dlq", "replay", "--all", "--json", terminal=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"replayed": DEAD_LETTERS}
    assert "replaying" in done.stderr and "100%" in done.stderr

    connection = await aio_pika.connect(vhost_amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.RECONCILER_QUEUE, passive=True)
        assert queue.declaration_result.message_count == DEAD_LETTERS
    finally:
        await connection.close()


async def test_waiting_for_a_feed_run_shows_it_on_a_terminal_only(
    database_url: str, vhost_amqp_url: str
) -> None:
    created = await asyncio.to_thread(
        rwasync, database_url, "", "provider", "create", "Waiting", "--json", terminal=False
    )
    provider = json.loads(created.stdout)
    added = await asyncio.to_thread(
        rwasync,
        database_url,
        "",
        "feed",
        "add",
        provider["provider_id"],
        "http://127.0.0.1:9/feed.json",
        "--json",
        terminal=False,
    )
    feed_id = json.loads(added.stdout)["feed_id"]
    wait = ("feed", "trigger", feed_id, "--wait", "--timeout", "2", "--json")
    # No poller runs here: the run stays queued, and the wait ends with exit 4 after 2 s.
    on_terminal, in_pipe = await asyncio.gather(
        asyncio.to_thread(rwasync, database_url, "", *wait, terminal=True),
        asyncio.to_thread(rwasync, database_url, "", *wait, terminal=False),
    )
    for done in (on_terminal, in_pipe):
        # the run as it stands is printed all the same (newcomer trial), then the error
        assert done.returncode == 4 and json.loads(done.stdout)["status"] == "queued"
        # The error comes after the spinner is gone (it would wipe a line printed under it).
        assert plain(done.stderr).rstrip().endswith("still queued after 2 s")
    assert "queued, 0 items read" in plain(on_terminal.stderr)
    assert "items read" not in in_pipe.stderr


def plain(text: str) -> str:
    """Text without the terminal's control sequences (colours, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
