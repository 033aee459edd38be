"""Feed sources and their runs: add, list, trigger (and wait), runs, approve and reject."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
import typer
from rich.table import Table

from rwasync.cli.common import EXIT_FAILED, EXIT_HELD, JsonFlag, emit, fail, run_db, settings
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.feeds import (
    DEFAULT_DELETION_THRESHOLD,
    FINISHED_STATUSES,
    DeletionThreshold,
    FeedSettingInvalid,
    RunStatus,
    parse_interval,
)
from rwasync.store import feeds

feed_app = typer.Typer(help="Feed sources and their runs.", no_args_is_help=True)


@feed_app.command("add")
def feed_add(
    provider_id: str,
    url: str,
    fmt: Annotated[str, typer.Option("--format", help="Feed format.")] = "json",
    every: Annotated[
        str | None,
        typer.Option("--every", help="Schedule interval, e.g. 15m, 24h (default: manual only)."),
    ] = None,
    threshold_percent: Annotated[
        float,
        typer.Option(
            "--deletion-threshold-percent", help="Hold runs deleting more than this share."
        ),
    ] = float(DEFAULT_DELETION_THRESHOLD.percent),
    threshold_min: Annotated[
        int, typer.Option("--deletion-threshold-min", help="...and more than this many assets.")
    ] = DEFAULT_DELETION_THRESHOLD.min_count,
    as_json: JsonFlag = False,
) -> None:
    """Add a feed source for a provider."""
    policy = AddressPolicy.from_setting(settings().feed_allowed_networks)
    try:
        interval = parse_interval(every) if every else None
    except FeedSettingInvalid as exc:
        fail(str(exc))
    threshold = DeletionThreshold(Decimal(str(threshold_percent)), threshold_min)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        return await feeds.add_feed(
            conn,
            provider_id=provider_id,
            url=url,
            fmt=fmt,
            interval_seconds=interval,
            policy=policy,
            threshold=threshold,
        )

    emit(run_db(work), as_json)


@feed_app.command("list")
def feed_list(
    provider_id: Annotated[str | None, typer.Option("--provider")] = None, as_json: JsonFlag = False
) -> None:
    """List feed sources."""
    items = run_db(lambda conn: feeds.list_feeds(conn, provider_id))
    emit({"items": items}, as_json)


def _wait_for_run(run_id: str, timeout: float) -> dict[str, Any]:
    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = await feeds.get_run(conn, run_id)
            assert run is not None
            if run["status"] in FINISHED_STATUSES and not (
                run["status"] == RunStatus.HELD and await feeds.approval_pending(conn, run_id)
            ):
                return run
            if time.monotonic() > deadline:
                fail(f"run {run_id} still {run['status']} after {timeout:.0f} s", EXIT_FAILED)
            await asyncio.sleep(0.25)

    return run_db(work)


def _exit_for(run: dict[str, Any]) -> None:
    if run["status"] == RunStatus.HELD:
        raise typer.Exit(EXIT_HELD)
    if run["status"] in (RunStatus.FAILED, RunStatus.REJECTED):
        raise typer.Exit(EXIT_FAILED)


@feed_app.command("trigger")
def feed_trigger(
    feed_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run and print it.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Run a feed now (it starts within 5 s). Exit 0 ok/not_modified, 3 held, 4 failed/rejected."""
    run_id = run_db(lambda conn: feeds.request_run(conn, feed_id))
    if not wait:
        emit({"run_id": run_id}, as_json)
        return
    run = _wait_for_run(run_id, timeout)
    emit(run, as_json)
    _exit_for(run)


@feed_app.command("runs")
def feed_runs(
    feed_id: str,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """A feed's runs, newest first."""
    items = run_db(lambda conn: feeds.list_runs(conn, feed_id, limit))

    def table() -> Table:
        t = Table("run_id", "status", "started_at", "finished_at", "counts", "reason")
        for r in items:
            t.add_row(
                r["run_id"],
                r["status"],
                r["started_at"] or "",
                r["finished_at"] or "",
                " ".join(f"{k}={v}" for k, v in r["counts"].items()),
                r.get("reason") or "",
            )
        return t

    emit({"items": items, "next_cursor": None}, as_json, table)


@feed_app.command("approve")
def feed_approve(
    run_id: str,
    timeout: Annotated[float, typer.Option("--timeout")] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Apply a feed's latest held run now, under the version guards; prints the finished run."""
    run_db(lambda conn: feeds.decide_run(conn, run_id, "approve"))
    run = _wait_for_run(run_id, timeout)
    emit(run, as_json)
    _exit_for(run)


@feed_app.command("reject")
def feed_reject(run_id: str, as_json: JsonFlag = False) -> None:
    """Reject a feed's latest held run: nothing of it is applied."""
    run_db(lambda conn: feeds.decide_run(conn, run_id, "reject"))
    run = run_db(lambda conn: feeds.get_run(conn, run_id))
    emit(run, as_json)
