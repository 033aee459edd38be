"""`rwasync status` on a real database and RabbitMQ vhost: queue depths and consumers by passive
declare (no management API here), the consumers' backlog, feed runs, dead letters, the problems
among them; `--json` is one document; a broker that does not answer is reported, not fatal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aio_pika
import asyncpg
import pytest

from rwasync.platform.broker import Broker
from rwasync.schema import topology
from rwasync.schema.messages import message_for
from tests.support.events import at, upserted

pytestmark = pytest.mark.integration

RECONCILER_DLQ = topology.dead_letter_queue(topology.RECONCILER_QUEUE)


def rwasync(
    database_url: str, amqp_url: str, *args: str, columns: int = 160
) -> subprocess.CompletedProcess[str]:
    """The CLI as a process; `columns`: the width of the operator's terminal (160: wide enough
    for anything, 80: a terminal's default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RWASYNC_")}
    env |= {
        "RWASYNC_ENV_FILE": os.devnull,  # never the developer's .env (make run's)
        "RWASYNC_DATABASE_URL": database_url,
        "RWASYNC_FEED_ALLOWED_NETWORKS": "127.0.0.0/8",
        "COLUMNS": str(columns),
    }
    if amqp_url:  # "": a command that needs no broker; the default URL stands
        env["RWASYNC_AMQP_URL"] = amqp_url
    return subprocess.run(
        [sys.executable, "-m", "rwasync.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def cli_json(database_url: str, amqp_url: str, *args: str) -> dict:  # type: ignore[type-arg]
    done = await asyncio.to_thread(rwasync, database_url, amqp_url, *args, "--json")
    assert done.returncode == 0, done.stderr
    document: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return document


async def ack(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    await message.ack()


async def a_troubled_system(database_url: str, broker: Broker) -> str:
    """Three asset messages nobody consumes, two asset events and a price undecided (the assets
    for five minutes), one dead letter, one failed feed run; returns the run's id."""
    for i in range(3):
        event = upserted("prv_status", f"s{i}", at(i))
        await broker.publish(topology.ASSETS_EXCHANGE, "asset.upserted", message_for([event]))
    provider = await cli_json(database_url, "", "provider", "create", "Status Estates")
    feed = await cli_json(
        database_url, "", "feed", "add", provider["provider_id"], "http://127.0.0.1:9/feed.json"
    )
    run = await cli_json(database_url, "", "feed", "trigger", feed["feed_id"])
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        for asset_id, kind, accepted in (
            ("s1", "asset.upserted", now - timedelta(minutes=5)),
            ("s2", "asset.deleted", now - timedelta(minutes=2)),
            ("s1", "price.updated", now - timedelta(seconds=1)),
        ):
            await conn.execute(
                "INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status,"
                " accepted_at) VALUES ($1, $2, $3, $4, 'accepted', $5)",
                uuid.uuid4(),
                provider["provider_id"],
                asset_id,
                kind,
                accepted,
            )
        await conn.execute(
            "INSERT INTO dead_letters (message_id, queue, body, reason, dead_lettered_at)"
            " VALUES ('dl-1', $1, '\\x7b7d', 'ValueError: cannot apply', $2)",
            topology.RECONCILER_QUEUE,
            now - timedelta(minutes=10),
        )
        await conn.execute(
            "UPDATE feed_runs SET status = 'failed', reason_code = 'fetch_error',"
            " reason = 'connection refused', started_at = now(), finished_at = now()"
            " WHERE run_id = $1",
            run["run_id"],
        )
    finally:
        await conn.close()
    return str(run["run_id"])


async def test_status_reports_queues_backlog_runs_dead_letters_and_problems(
    database_url: str, vhost_amqp_url: str, broker: Broker
) -> None:
    run_id = await a_troubled_system(database_url, broker)
    # One real consumer on the price queue.
    connection = await aio_pika.connect(vhost_amqp_url)
    try:
        channel = await connection.channel()
        prices = await channel.declare_queue(topology.PRICING_QUEUE, passive=True)
        await prices.consume(ack)
        report = await cli_json(database_url, vhost_amqp_url, "status")
        people = await asyncio.to_thread(rwasync, database_url, vhost_amqp_url, "status")
        narrow = await asyncio.to_thread(
            rwasync, database_url, vhost_amqp_url, "status", columns=80
        )
    finally:
        await connection.close()

    queues = {q["queue"]: q for q in report["queues"]["items"]}
    assert report["queues"]["source"] == "amqp" and report["queues"]["error"] is None
    assert set(queues) == {
        topology.RECONCILER_QUEUE,
        RECONCILER_DLQ,
        topology.PRICING_QUEUE,
        topology.dead_letter_queue(topology.PRICING_QUEUE),
    }
    reconciler_queue = queues[topology.RECONCILER_QUEUE]
    assert (reconciler_queue["messages"], reconciler_queue["consumers"]) == (3, 0)
    assert queues[topology.PRICING_QUEUE]["consumers"] == 1

    lag = {item["consumer"]: item for item in report["lag"]}
    assert lag["reconciler"]["undecided"] == 2
    assert 295 <= lag["reconciler"]["lag_seconds"] < 360
    assert lag["pricing"]["undecided"] == 1 and lag["pricing"]["lag_seconds"] < 60

    runs = report["feed_runs"]
    assert runs["recent"][0]["run_id"] == run_id and runs["recent"][0]["status"] == "failed"
    # The reason in words, not only its code: what an operator acts on (operator trial).
    assert runs["recent"][0]["reason"] == "connection refused"
    assert runs["last_24h"] == {"failed": 1} and runs["failure_rate"] == 1.0
    assert runs["failed"] == 1
    assert report["dead_letters"]["total"] == 1 and report["dead_letters"]["last_hour"] == 1
    assert report["dead_letters"]["items"][0]["queue"] == topology.RECONCILER_QUEUE

    problems = "\n".join(report["problems"])
    assert f"{topology.RECONCILER_QUEUE}: no consumer" in problems
    assert f"{topology.PRICING_QUEUE}: no consumer" not in problems
    assert "reconciler: 2 events undecided" in problems and "pricing:" not in problems
    assert "1 dead letter (1 in the last hour)" in problems and "1 feed run failed" in problems

    # For people: the same on one screen, exit 0.
    assert people.returncode == 0, people.stderr
    for text in ("Queues (from amqp)", topology.RECONCILER_QUEUE, run_id, "fetch_error"):
        assert text in people.stdout, text
    assert "feed runs failed, last 24 h │ 1 (100.0% of those finished)" in people.stdout

    # On an 80-column terminal: nothing wider, and no id, status or reason code cut short.
    assert narrow.returncode == 0, narrow.stderr
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines()), narrow.stdout
    words = narrow.stdout.split()
    feed_id = runs["recent"][0]["feed_id"]
    for whole in (
        run_id,
        feed_id,
        "failed",
        "fetch_error",
        topology.RECONCILER_QUEUE,
        RECONCILER_DLQ,
    ):
        assert whole in words, (whole, narrow.stdout)
    assert "feed runs failed, last 24 h │ 1 (100.0% of those finished)" in narrow.stdout


@contextlib.asynccontextmanager
async def consuming_work_queues(amqp_url: str) -> AsyncIterator[None]:
    """A consumer on each work queue (as the running services have), acking what comes."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for name in topology.WORK_QUEUES:
            queue = await channel.declare_queue(name, passive=True)
            await queue.consume(ack)
        yield
    finally:
        await connection.close()


async def test_status_of_a_quiet_system_has_no_problem(
    database_url: str, vhost_amqp_url: str, broker: Broker
) -> None:
    assert broker.is_ready()  # the topology is declared
    async with consuming_work_queues(vhost_amqp_url):
        report = await cli_json(database_url, vhost_amqp_url, "status")
    assert report["problems"] == []
    assert [item["undecided"] for item in report["lag"]] == [0, 0]


async def test_a_broker_that_does_not_answer_is_reported_not_fatal(database_url: str) -> None:
    report = await cli_json(database_url, "amqp://guest:guest@127.0.0.1:1/", "status")
    assert report["queues"]["items"] == [] and report["queues"]["error"]
    assert report["problems"][0].startswith("broker not readable (amqp)")
    assert report["lag"] and report["feed_runs"]["recent"] == []


async def test_a_vhost_that_does_not_exist_is_named_as_the_cause(database_url: str) -> None:
    # aiormq says only "Expected one of ['Connection.OpenOk'], got <Connection.Close …>", the
    # broker's reason lost (operator trial): the report says what an operator should check.
    url = "amqp://guest:guest@127.0.0.1:5672/rwasync_no_such_vhost"
    report = await cli_json(database_url, url, "status")
    error = report["queues"]["error"]
    assert "the vhost in the URL does not exist, or the user may not use it" in error, error


async def test_a_database_that_does_not_answer_exits_1(vhost_amqp_url: str) -> None:
    done = await asyncio.to_thread(
        rwasync, "postgresql://postgres@127.0.0.1:1/none", vhost_amqp_url, "status", "--json"
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "database error" in done.stderr


async def test_a_vhost_without_the_work_queues_is_a_problem(
    database_url: str, vhost_amqp_url: str
) -> None:
    # No service has declared the topology on this vhost (or the URL names the wrong one):
    # nothing can flow, which must not read as "all well".
    report = await cli_json(database_url, vhost_amqp_url, "status")
    assert report["queues"]["items"] == [] and report["queues"]["error"] is None
    assert report["problems"] == [
        f"{queue}: no such queue in this vhost (no service has declared it)"
        for queue in topology.WORK_QUEUES
    ]


async def test_held_price_ticks_are_counted_and_a_problem(
    database_url: str, vhost_amqp_url: str, broker: Broker
) -> None:
    # Ticks held for an operator are invisible to investors until one decides: "all well" would
    # let them wait for ever.
    async with consuming_work_queues(vhost_amqp_url):
        quiet = await cli_json(database_url, vhost_amqp_url, "status")
        assert quiet["held_prices"] == {"total": 0, "items": []}
        provider = await cli_json(database_url, "", "provider", "create", "Held Estates")
        conn = await asyncpg.connect(database_url)
        try:
            for minutes in (3, 1):
                await conn.execute(
                    "INSERT INTO price_history (event_id, provider_id, asset_id, as_of, amount,"
                    " currency, accepted_at, state, hold_kind, hold_reason, held_at)"
                    " VALUES ($1, $2, 'h1', $3, 300, 'USD', $3, 'held', 'jump', 'moves', $3)",
                    uuid.uuid4(),
                    provider["provider_id"],
                    datetime.now(UTC) - timedelta(minutes=minutes),
                )
        finally:
            await conn.close()
        report = await cli_json(database_url, vhost_amqp_url, "status")
        people = await asyncio.to_thread(rwasync, database_url, vhost_amqp_url, "status")
    held = report["held_prices"]
    assert held["total"] == 2
    assert [(i["provider_id"], i["ticks"]) for i in held["items"]] == [(provider["provider_id"], 2)]
    assert report["problems"] == ["2 price ticks held for an operator (rwasync price held list)"]
    assert people.returncode == 0, people.stderr
    assert "Held price ticks" in people.stdout and provider["provider_id"] in people.stdout
    assert "all well" not in people.stdout


async def test_a_held_feed_run_is_a_problem(
    database_url: str, vhost_amqp_url: str, broker: Broker
) -> None:
    assert broker.is_ready()
    async with consuming_work_queues(vhost_amqp_url):
        provider = await cli_json(database_url, "", "provider", "create", "Held Feed Estates")
        feed = await cli_json(
            database_url, "", "feed", "add", provider["provider_id"], "http://127.0.0.1:9/f.json"
        )
        run = await cli_json(database_url, "", "feed", "trigger", feed["feed_id"])
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE feed_runs SET status = 'held', reason_code = 'deletion_threshold',"
                " reason = 'would delete 100 of 300 live assets', started_at = now(),"
                " finished_at = now() WHERE run_id = $1",
                run["run_id"],
            )
        finally:
            await conn.close()
        report = await cli_json(database_url, vhost_amqp_url, "status")
        people = await asyncio.to_thread(rwasync, database_url, vhost_amqp_url, "status")
    # README "Approve a held feed": nothing of it is applied until someone decides; status said
    # nothing of it (operator trial), though it counts held price ticks as a problem.
    assert report["feed_runs"]["last_24h"] == {"held": 1}
    assert [r["run_id"] for r in report["held_feed_runs"]["items"]] == [run["run_id"]]
    assert "1 feed run held for an operator" in " ".join(report["problems"])
    assert "all well" not in people.stdout
    assert "Held feed runs" in people.stdout and run["run_id"] in people.stdout
    narrow = await asyncio.to_thread(rwasync, database_url, vhost_amqp_url, "status", columns=80)
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines()), narrow.stdout
    for whole in (run["run_id"], feed["feed_id"], "deletion_threshold"):
        assert narrow.stdout.split().count(whole) == 2, (whole, narrow.stdout)  # latest and held

    # Approved, it waits for a poller, not for an operator (approve would now be refused).
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE feed_runs SET decision = 'approve' WHERE run_id = $1", run["run_id"]
        )
    finally:
        await conn.close()
    async with consuming_work_queues(vhost_amqp_url):
        report = await cli_json(database_url, vhost_amqp_url, "status")
    assert report["held_feed_runs"] == {"total": 0, "items": []}
    assert not any("feed runs held" in p for p in report["problems"])


async def test_feed_work_no_poller_takes_up_is_a_problem(
    database_url: str, vhost_amqp_url: str, broker: Broker
) -> None:
    """A feed-poller consumes no queue, so `no consumer` never shows one stopped (operator trial:
    every poller down, status said all well). The work it leaves late does: a scheduled feed past
    its next run, a requested run not started, a running one whose lease ran out."""
    assert broker.is_ready()
    async with consuming_work_queues(vhost_amqp_url):
        provider = await cli_json(database_url, "", "provider", "create", "Late Estates")
        feed = await cli_json(
            database_url,
            "",
            "feed",
            "add",
            provider["provider_id"],
            "http://127.0.0.1:9/f.json",
            "--every",
            "24h",
        )
        queued = await cli_json(database_url, "", "feed", "trigger", feed["feed_id"])
        running = await cli_json(database_url, "", "feed", "trigger", feed["feed_id"])
        fresh = await cli_json(database_url, vhost_amqp_url, "status")
        conn = await asyncpg.connect(database_url)
        try:
            ago = "now() - make_interval(mins => $2)"
            await conn.execute(
                f"UPDATE feed_sources SET next_run_at = {ago} WHERE feed_id = $1",
                feed["feed_id"],
                10,
            )
            await conn.execute(
                f"UPDATE feed_runs SET requested_at = {ago} WHERE run_id = $1", queued["run_id"], 20
            )
            await conn.execute(
                f"UPDATE feed_runs SET status = 'running', started_at = {ago},"
                f" requested_at = {ago}, claimed_by = 'gone', claimed_until = {ago}"
                " WHERE run_id = $1",
                running["run_id"],
                10,
            )
        finally:
            await conn.close()
        report = await cli_json(database_url, vhost_amqp_url, "status")
        people = await asyncio.to_thread(rwasync, database_url, vhost_amqp_url, "status")
    # Just requested and scheduled a day on, nothing is late yet.
    assert fresh["feed_poller_late"] == {
        "feeds_overdue": 0,
        "runs_queued": 0,
        "runs_abandoned": 0,
        "late_seconds": 0.0,
    }
    assert not any("feed-poller" in p for p in fresh["problems"])
    late = report["feed_poller_late"]
    assert (late["feeds_overdue"], late["runs_queued"], late["runs_abandoned"]) == (1, 1, 1)
    assert 20 * 60 <= late["late_seconds"] < 25 * 60  # the queued run, requested 20 min ago
    problem = next(p for p in report["problems"] if "feed-poller" in p)
    assert problem == (
        "1 scheduled feed overdue, 1 feed run requested and not started, 1 feed run whose "
        "poller stopped renewing its lease, the oldest for 20 min: is a feed-poller running, "
        "and keeping up?"
    )
    assert people.returncode == 0, people.stderr
    # the panel may wrap the sentence: read its words without the box's borders
    assert "is a feed-poller running" in " ".join(people.stdout.replace("│", " ").split())
