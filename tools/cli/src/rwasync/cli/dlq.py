"""Dead letters: list, show, replay and purge the events no consumer could apply.

The reconciler moves every dead-letter queue's messages into a table as they arrive; these
commands act on that table. A replay publishes the message again (with a confirm) to the
exchange it came from and then forgets it, so a crash in between only replays it twice, which
the version guards make harmless. A purge forgets it for good: its events' receipts end
`rejected`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import orjson
import typer
from rich.progress import Progress
from rich.table import Table

from rwasync.cli.common import emit, fail, run_db, settings, stderr, unknown
from rwasync.cli.flags import JsonFlag
from rwasync.platform.broker import Broker, BrokerUnavailable
from rwasync.schema import topology
from rwasync.store import dead_letters

dlq_app = typer.Typer(
    help="Dead letters: events no consumer could apply.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

AllFlag = Annotated[bool, typer.Option("--all", help="Every dead letter.")]
MessageId = Annotated[str | None, typer.Argument(help="A dead letter's message_id.")]

# Replays published at once (their confirms pipelined) before the rows are forgotten.
REPLAY_CHUNK = 50


def _chosen(message_id: str | None, every: bool) -> None:
    """One dead letter or all of them, never both nor neither: a usage error (exit 2)."""
    if (message_id is None) == (not every):
        raise typer.BadParameter(
            "give either one dead letter's MESSAGE_ID or --all",
            param_hint="MESSAGE_ID / --all",
        )


def _work_queue(text: str) -> str:
    """`--queue`: a work queue's name; a mistyped one would otherwise list nothing, which reads
    as "no dead letters"."""
    if text not in topology.WORK_QUEUES:
        raise typer.BadParameter(
            f"{text!r} is not a work queue: one of {', '.join(topology.WORK_QUEUES)}"
        )
    return text


async def _dead_letter(conn: asyncpg.Connection, message_id: str) -> asyncpg.Record:
    row: asyncpg.Record | None = await dead_letters.get_dead_letter(conn, message_id)
    if row is None:
        raise unknown("message_id", message_id, "dead letter")
    return row


async def _targets(conn: asyncpg.Connection, message_id: str | None) -> list[str]:
    if message_id is None:
        return [i["message_id"] for i in await dead_letters.list_dead_letters(conn)]
    await _dead_letter(conn, message_id)
    return [message_id]


def _progress(what: str, total: int) -> tuple[Progress, Any]:
    progress = Progress(console=stderr, transient=True, disable=not stderr.is_terminal)
    return progress, progress.add_task(what, total=total)


@dlq_app.command("list")
def dlq_list(
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            parser=_work_queue,
            help=f"Only this work queue's: {' or '.join(topology.WORK_QUEUES)}.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters, oldest first."""
    items = run_db(lambda conn: dead_letters.list_dead_letters(conn, queue))

    def table() -> Table:
        # At most 79 columns, every cell whole: the message id (a UUID, 36 characters) over its
        # queue, the counts a line each, and the reasons below the table, where they have the
        # width (six columns left the queue and the reason a few letters a line: `rwa…`).
        t = Table(
            "message_id", "provider_id", "counts",
            caption="\n".join(f"{i['message_id']}: {i['reason']}" for i in items) or None,
            caption_justify="left",
        )  # fmt: skip
        for column in t.columns:
            column.no_wrap = True
        for i in items:
            t.add_row(
                f"{i['message_id']}\n{i['queue']}",
                i["provider_id"] or "-",
                f"events={len(i['event_ids'])}\ndeliveries={i['deliveries']}",
            )
        return t

    emit({"items": items}, as_json, table)


@dlq_app.command("show")
def dlq_show(message_id: str, as_json: JsonFlag = False) -> None:
    """One dead letter with its headers and body (JSON when it parses)."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await _dead_letter(conn, message_id)
        try:
            body: Any = orjson.loads(row["body"])
        except orjson.JSONDecodeError:
            body = row["body"].decode(errors="replace")
        return {**dead_letters.item(row), "headers": row["headers"], "body": body}

    emit(run_db(work), as_json)


async def _replay(conn: asyncpg.Connection, broker: Broker, targets: Sequence[str]) -> int:
    replayed = 0
    progress, task = _progress("replaying", len(targets))
    with progress:
        for start in range(0, len(targets), REPLAY_CHUNK):
            chunk = targets[start : start + REPLAY_CHUNK]
            # Removed and published in one transaction (see `take_for_replay`): a dead letter is
            # forgotten only once its replay is confirmed, and never after it came back.
            async with conn.transaction():
                rows = await dead_letters.take_for_replay(conn, chunk)
                outcomes = await asyncio.gather(
                    *(_publish(broker, row) for row in rows), return_exceptions=True
                )
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome
            replayed += len(rows)
            progress.advance(task, len(chunk))
    return replayed


async def _publish(broker: Broker, row: asyncpg.Record) -> None:
    try:
        exchange, routing_key = topology.replay_target(row["queue"])
    except KeyError:
        fail(f"dead letter {row['message_id']}: unknown queue {row['queue']!r}")
    await broker.publish_body(
        exchange,
        routing_key,
        bytes(row["body"]),
        message_id=row["message_id"],
        headers={"x-rwasync-replayed-at": datetime.now(UTC).isoformat()},
    )


@dlq_app.command("replay")
def dlq_replay(
    message_id: MessageId = None, every: AllFlag = False, as_json: JsonFlag = False
) -> None:
    """Publish dead letters again to their queue's exchange; prints {"replayed": n}."""
    _chosen(message_id, every)
    amqp_url = settings().amqp_url

    async def work(conn: asyncpg.Connection) -> dict[str, int]:
        targets = await _targets(conn, message_id)
        if not targets:
            return {"replayed": 0}
        broker = Broker(amqp_url, publish_timeout=10, name="rwasync-cli")
        broker.start()
        try:
            await broker.wait_ready(timeout=30, give_up_on_refused_login=True)
            return {"replayed": await _replay(conn, broker, targets)}
        except (TimeoutError, BrokerUnavailable) as exc:
            # A TimeoutError says nothing of its own: the connection never came.
            why = str(exc) or "no connection to RabbitMQ within 30 s"
            fail(f"broker unavailable, nothing more replayed (the rest are kept): {why}")
        finally:
            await broker.close()

    emit(run_db(work), as_json)


@dlq_app.command("purge")
def dlq_purge(
    message_id: MessageId = None, every: AllFlag = False, as_json: JsonFlag = False
) -> None:
    """Forget dead letters for good: their events' receipts end `rejected`; prints {"purged": n}."""
    _chosen(message_id, every)

    async def work(conn: asyncpg.Connection) -> dict[str, int]:
        return {"purged": await dead_letters.purge(conn, await _targets(conn, message_id))}

    emit(run_db(work), as_json)
