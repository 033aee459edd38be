"""`rwasync status`: one screen for the on-call engineer — queue depths and consumers, how far
the reconciler and pricing are behind, the latest feed runs, dead letters and error rates.

Queue figures come from RabbitMQ's management API when RWASYNC_RABBITMQ_MANAGEMENT_URL names it
(ready and unacknowledged messages, consumers, rates), else from the AMQP connection by passive
declares (ready messages and consumers). Everything else comes from Postgres.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import aio_pika
import aiohttp
import asyncpg
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from yarl import URL

from rwasync.cli import queries
from rwasync.cli.common import ids_whole
from rwasync.platform.broker import connect_error, queue_depths
from rwasync.schema import topology

RECENT_RUNS: Final = 10
# A consumer further behind than this, a work queue without consumers, a dead letter, a failed
# run in the last day, feed work a poller is late for, or a price tick held for an operator is a
# problem `status` lists.
LAG_WARNING_SECONDS: Final = 60.0
# A scheduled feed this far past its next run, or a run requested this long ago and not started
# (or whose poller's lease ran out this long ago): no feed-poller is running, or it cannot keep up.
POLLER_LATE_SECONDS: Final = 300.0
QUEUES: Final = tuple(
    name for queue in topology.WORK_QUEUES for name in (queue, topology.dead_letter_queue(queue))
)
# Which consumer decides which event types.
CONSUMERS: Final = (
    ("reconciler", topology.RECONCILER_QUEUE, ("asset.upserted", "asset.patched", "asset.deleted")),
    ("pricing", topology.PRICING_QUEUE, ("price.updated",)),
)


async def queues_by_amqp(amqp_url: str) -> list[dict[str, Any]]:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        depths = await queue_depths(connection, QUEUES)
    finally:
        await connection.close()
    return [
        {"queue": name, "messages": depths[name][0], "unacked": None, "consumers": depths[name][1]}
        for name in QUEUES
        if name in depths
    ]


async def queues_by_management(management_url: str, amqp_url: str) -> list[dict[str, Any]]:
    """The management API's figures for our queues in the vhost of the AMQP URL."""
    base = URL(management_url)
    vhost = URL(amqp_url).path.lstrip("/") or "/"
    auth = aiohttp.BasicAuth(base.user or "", base.password or "")
    found = []
    async with aiohttp.ClientSession(auth=auth, timeout=aiohttp.ClientTimeout(total=10)) as session:
        for name in QUEUES:
            url = f"{base.with_user(None)}".rstrip("/") + (
                f"/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}"
            )
            async with session.get(url) as response:
                if response.status == 404:
                    continue
                response.raise_for_status()
                body = await response.json()
            stats = body.get("message_stats") or {}
            found.append(
                {
                    "queue": name,
                    "messages": int(body.get("messages_ready", 0)),
                    "unacked": int(body.get("messages_unacknowledged", 0)),
                    "consumers": int(body.get("consumers", 0)),
                    "publish_rate": float((stats.get("publish_details") or {}).get("rate", 0.0)),
                    "deliver_rate": float(
                        (stats.get("deliver_get_details") or {}).get("rate", 0.0)
                    ),
                }
            )
    return found


async def broker_status(amqp_url: str, management_url: str) -> dict[str, Any]:
    try:
        if management_url:
            items = await queues_by_management(management_url, amqp_url)
            return {"source": "management", "items": items, "error": None}
        return {"source": "amqp", "items": await queues_by_amqp(amqp_url), "error": None}
    except (OSError, TimeoutError, aiohttp.ClientError, aio_pika.exceptions.AMQPError) as exc:
        error = connect_error(exc)
        source = "management" if management_url else "amqp"
        return {"source": source, "items": [], "error": f"{type(error).__name__}: {error}"}


async def database_status(conn: asyncpg.Connection, now: datetime) -> dict[str, Any]:
    undecided = {r["type"]: r for r in await conn.fetch(queries.UNDECIDED_EVENTS)}
    lag = []
    for consumer, queue, types in CONSUMERS:
        rows = [undecided[t] for t in types if t in undecided]
        oldest = min((r["oldest"] for r in rows), default=None)
        lag.append(
            {
                "consumer": consumer,
                "queue": queue,
                "undecided": sum(int(r["events"]) for r in rows),
                "oldest_accepted_at": oldest,
                # never below 0: `now` is this host's clock, `oldest` another's
                "lag_seconds": max(0.0, round((now - oldest).total_seconds(), 3))
                if oldest
                else 0.0,
            }
        )
    runs = [dict(r) for r in await conn.fetch(queries.RECENT_FEED_RUNS, RECENT_RUNS)]
    day = {
        r["status"]: int(r["runs"])
        for r in await conn.fetch(queries.FEED_RUNS_SINCE, now - timedelta(days=1))
    }
    finished = sum(n for s, n in day.items() if s not in ("queued", "running"))
    failed = day.get("failed", 0)
    dead = [
        dict(r) for r in await conn.fetch(queries.DEAD_LETTERS_BY_QUEUE, now - timedelta(hours=1))
    ]
    held = [
        {"provider_id": r["provider_id"], "ticks": int(r["ticks"]), "oldest_held_at": r["oldest"]}
        for r in await conn.fetch(queries.HELD_PRICES_BY_PROVIDER)
    ]
    held_runs = [dict(r) for r in await conn.fetch(queries.HELD_FEED_RUNS)]
    late = await conn.fetchrow(
        queries.POLLER_WORK_LATE, now - timedelta(seconds=POLLER_LATE_SECONDS)
    )
    assert late is not None
    oldest = min((t for t in (late["oldest_due"], late["oldest_requested"]) if t), default=None)
    return {
        "lag": lag,
        "feed_runs": {
            "recent": runs,
            "last_24h": day,
            # Failed in the last 24 h: the count an operator acts on, the rate beside it.
            "failed": failed,
            "failure_rate": round(failed / finished, 4) if finished else None,
        },
        "dead_letters": {
            "items": [
                {"queue": d["queue"], "messages": int(d["messages"]), "oldest": d["oldest"]}
                for d in dead
            ],
            "total": sum(int(d["messages"]) for d in dead),
            "last_hour": sum(int(d["recent"]) for d in dead),
        },
        "held_prices": {"total": sum(h["ticks"] for h in held), "items": held},
        "held_feed_runs": {"total": len(held_runs), "items": held_runs},
        "feed_poller_late": {
            "feeds_overdue": int(late["feeds_overdue"]),
            "runs_queued": int(late["runs_queued"]),
            "runs_abandoned": int(late["runs_abandoned"]),
            # how late the oldest of them is (0 when none)
            "late_seconds": max(0.0, round((now - oldest).total_seconds(), 3)) if oldest else 0.0,
        },
    }


def problems(report: dict[str, Any]) -> list[str]:
    """What needs a look, in words; empty when all is well."""
    found = []
    broker = report["queues"]
    if broker["error"] is not None:
        found.append(f"broker not readable ({broker['source']}): {broker['error']}")
    if broker["error"] is None:
        present = {item["queue"] for item in broker["items"]}
        for queue in topology.WORK_QUEUES:
            if queue not in present:
                # A wrong vhost, or a broker no service has started on yet: nothing flows.
                found.append(f"{queue}: no such queue in this vhost (no service has declared it)")
    for item in broker["items"]:
        if item["queue"] in topology.WORK_QUEUES and item["consumers"] == 0:
            found.append(f"{item['queue']}: no consumer")
    for lag in report["lag"]:
        if lag["lag_seconds"] > LAG_WARNING_SECONDS:
            found.append(
                f"{lag['consumer']}: {lag['undecided']} events undecided, oldest "
                f"{lag['lag_seconds']:.0f} s"
            )
    dead = report["dead_letters"]
    if dead["total"]:
        found.append(
            f"{_counted(dead['total'], 'dead letter')} ({dead['last_hour']} in the last hour)"
        )
    failed = report["feed_runs"]["failed"]
    if failed:
        found.append(f"{_counted(failed, 'feed run')} failed in the last 24 h")
    # Investors never see a held tick, nor the latest price move past it, until an operator
    # releases or rejects it: nothing else tells anyone that one waits.
    held = report["held_prices"]["total"]
    if held:
        ticks = _counted(held, "price tick")
        found.append(f"{ticks} held for an operator (rwasync price held list)")
    # Nothing of a held snapshot is applied until someone approves or rejects it.
    late = report["feed_poller_late"]
    waiting = [
        f"{_counted(n, what)} {state}"
        for n, what, state in (
            (late["feeds_overdue"], "scheduled feed", "overdue"),
            (late["runs_queued"], "feed run", "requested and not started"),
            (late["runs_abandoned"], "feed run", "whose poller stopped renewing its lease"),
        )
        if n
    ]
    if waiting:
        found.append(
            f"{', '.join(waiting)}, the oldest for {late['late_seconds'] / 60:.0f} min: "
            "is a feed-poller running, and keeping up?"
        )
    runs = report["held_feed_runs"]["total"]
    if runs:
        held_runs = _counted(runs, "feed run")
        found.append(f"{held_runs} held for an operator (rwasync feed approve|reject RUN_ID)")
    return found


def _counted(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


async def gather(conn: asyncpg.Connection, amqp_url: str, management_url: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    broker, database = await asyncio.gather(
        broker_status(amqp_url, management_url), database_status(conn, now)
    )
    report: dict[str, Any] = {"at": now, "queues": broker, **database}
    report["problems"] = problems(report)
    return report


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _when(moment: datetime) -> str:
    """A time as two short lines, date above time: a narrow column in an 80-column table."""
    return f"{moment:%Y-%m-%d}\n{moment:%H:%M:%S}"


def render(report: dict[str, Any], console: Console) -> None:
    """The report for people: one screen of small tables, each fitting 80 columns (a terminal's
    default, and a pipe's) with its ids whole: a run's id above its feed's, a status above its
    reason code (`--json` has every field)."""
    broker = report["queues"]
    queues = Table(title=f"Queues (from {broker['source']})", title_justify="left")
    queues.add_column("queue")
    queues.add_column("ready", justify="right")
    queues.add_column("unacked", justify="right")
    queues.add_column("consumers", justify="right")
    for item in broker["items"]:
        no_consumer = item["queue"] in topology.WORK_QUEUES and item["consumers"] == 0
        queues.add_row(
            item["queue"],
            str(item["messages"]),
            "-" if item["unacked"] is None else str(item["unacked"]),
            f"[red]{item['consumers']}[/red]" if no_consumer else str(item["consumers"]),
        )
    if broker["error"] is not None:
        queues.caption = f"[red]broker not readable: {broker['error']}[/red]"

    lag = Table(title="Consumers' backlog", title_justify="left")
    for column in ("consumer", "undecided events", "oldest undecided"):
        lag.add_column(column, justify="left" if column == "consumer" else "right")
    for item in report["lag"]:
        late = item["lag_seconds"] > LAG_WARNING_SECONDS
        age = _age(item["lag_seconds"]) if item["undecided"] else "-"
        lag.add_row(item["consumer"], str(item["undecided"]), f"[red]{age}[/red]" if late else age)

    runs = Table(title="Latest feed runs", title_justify="left")
    runs.add_column("run_id\nfeed_id")
    runs.add_column("status\nreason", no_wrap=True)
    runs.add_column("requested", no_wrap=True)
    runs.add_column("seen", justify="right")
    colours = {"ok": "green", "not_modified": "green", "held": "yellow", "failed": "red"}
    for run in report["feed_runs"]["recent"]:
        colour = colours.get(run["status"], "white")
        runs.add_row(
            f"{run['run_id']}\n{run['feed_id']}",
            f"[{colour}]{run['status']}[/{colour}]"
            + (f"\n{code}" if (code := run["reason_code"]) else ""),
            _when(run["requested_at"]),
            str((run["counts"] or {}).get("seen", "")),
        )

    dead = Table(title="Dead letters", title_justify="left")
    for column in ("queue", "messages", "oldest"):
        dead.add_column(column)
    for item in report["dead_letters"]["items"]:
        dead.add_row(item["queue"], str(item["messages"]), f"{item['oldest']:%Y-%m-%d %H:%M:%S}")

    held = Table(title="Held price ticks", title_justify="left")
    for column in ("provider_id", "ticks", "oldest held"):
        held.add_column(column)
    for item in report["held_prices"]["items"]:
        held.add_row(
            item["provider_id"], str(item["ticks"]), f"{item['oldest_held_at']:%Y-%m-%d %H:%M:%S}"
        )

    held_runs = Table(title="Held feed runs", title_justify="left")
    held_runs.add_column("run_id\nfeed_id")
    held_runs.add_column("reason", no_wrap=True)
    held_runs.add_column("held at", no_wrap=True)
    for item in report["held_feed_runs"]["items"]:
        held_runs.add_row(
            f"{item['run_id']}\n{item['feed_id']}",
            item["reason_code"] or "",
            f"{item['held_at']:%Y-%m-%d %H:%M:%S}" if item["held_at"] else "",
        )

    feed_runs = report["feed_runs"]
    failed, rate = feed_runs["failed"], feed_runs["failure_rate"]
    errors = Table(title="Error rates", title_justify="left", show_header=False)
    errors.add_row(
        "feed runs, last 24 h",
        " ".join(f"{k}={v}" for k, v in sorted(feed_runs["last_24h"].items())) or "none",
    )
    share = "" if rate is None else f" ({rate:.1%} of those finished)"
    errors.add_row(
        "feed runs failed, last 24 h", f"[red]{failed}[/red]{share}" if failed else f"0{share}"
    )
    errors.add_row("dead letters, last hour", str(report["dead_letters"]["last_hour"]))

    found = report["problems"]
    verdict = (
        "[green]all well[/green]"
        if not found
        else "\n".join(f"[yellow]•[/yellow] {problem}" for problem in found)
    )
    console.print(
        Panel(
            Group(
                queues, lag, ids_whole(runs), dead, ids_whole(held), ids_whole(held_runs), errors
            ),
            title=f"rwasync status at {report['at']:%Y-%m-%d %H:%M:%S} UTC",
        )
    )
    console.print(Panel(verdict, title="problems"))
