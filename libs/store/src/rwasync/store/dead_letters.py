"""Dead letters as rows: the reconciler moves every `.dlq` message here (insert, then ack), and the
operator CLI lists, shows, replays and purges them (`rwasync dlq`).

A dead letter comes from one of two places. The consumer dead-letters an event it cannot apply,
alone, with `x-rwasync-reason`; the broker dead-letters a message that reached the work queue's
delivery limit (it crashed or stalled its consumer each time) with no reason of ours, only
`x-death` and the delivery count, which the reason then spells out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import asyncpg

from rwasync.schema import topology
from rwasync.schema.events import EventMessage, MalformedMessage
from rwasync.schema.messages import decode_message
from rwasync.schema.timestamps import timestamp_text


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    queue: str
    body: bytes
    headers: dict[str, Any]
    event_ids: list[UUID]
    event_types: list[str]
    provider_id: str | None
    reason: str
    deliveries: int
    dead_lettered_at: datetime
    message: EventMessage | None


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return timestamp_text(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def dead_letter_from(
    message_id: str | None, body: bytes, headers: Mapping[str, Any], *, dlq: str
) -> DeadLetter:
    """The row for a message taken from the dead-letter queue `dlq`."""
    death = _first_death(headers)
    queue = str(
        headers.get(topology.HEADER_ORIGIN_QUEUE)
        or (death or {}).get("queue")
        or dlq.removesuffix(".dlq")
    )
    deliveries = _int(headers.get(topology.HEADER_DELIVERIES))
    if deliveries is None:
        deliveries = _int(headers.get("x-delivery-count"))
        if deliveries is not None:
            deliveries += 1  # the count is of redeliveries; the first delivery makes one more
    why = str((death or {}).get("reason") or "unknown")
    if deliveries is None and why == "delivery_limit":
        # The broker says only that the work queue's limit was passed: one delivery beyond it.
        deliveries = topology.DELIVERY_LIMIT + 1
    reason = headers.get(topology.HEADER_REASON)
    if not isinstance(reason, str | bytes):
        times = f" after {deliveries} deliveries" if deliveries else ""
        reason = (
            f"dead-lettered by the broker ({why}){times}: the message crashed or stalled its "
            "consumer each time, so no reason was recorded"
        )
    elif isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    if deliveries is None:
        # Nothing counted it (a malformed message dead-lettered by a consumer older than its
        # deliveries header): a message is dead-lettered while delivered, so once at least.
        deliveries = 1
    when = headers.get(topology.HEADER_DEAD_LETTERED_AT)
    dead_at = (death or {}).get("time")
    if isinstance(when, str):
        dead_lettered_at = datetime.fromisoformat(when)
    elif isinstance(dead_at, datetime):
        dead_lettered_at = dead_at if dead_at.tzinfo else dead_at.replace(tzinfo=UTC)
    else:
        dead_lettered_at = datetime.now(UTC)
    try:
        message: EventMessage | None = decode_message(body)
    except MalformedMessage:
        message = None
    events = message.events if message is not None else []
    provider = headers.get(topology.HEADER_PROVIDER_ID)
    return DeadLetter(
        message_id=message_id or "sha256:" + hashlib.sha256(body).hexdigest()[:32],
        queue=queue,
        body=body,
        headers=_json_safe(dict(headers)),
        event_ids=[e.event_id for e in events],
        event_types=[str(e.type) for e in events],
        provider_id=events[0].provider_id if events else (str(provider) if provider else None),
        reason=reason,
        deliveries=deliveries,
        dead_lettered_at=dead_lettered_at,
        message=message,
    )


KEEP: Final = """
INSERT INTO dead_letters (message_id, queue, body, headers, event_ids, event_types, provider_id,
                          reason, deliveries, dead_lettered_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id
"""

SAME_BODY: Final = "SELECT body = $2 FROM dead_letters WHERE message_id = $1"

_COLUMNS: Final = """message_id, queue, event_ids, provider_id, reason, deliveries,
                     dead_lettered_at"""

LIST: Final = f"""
SELECT {_COLUMNS} FROM dead_letters
WHERE ($1::text IS NULL OR queue = $1)
ORDER BY dead_lettered_at, message_id
"""

GET: Final = f"SELECT {_COLUMNS}, body, headers FROM dead_letters WHERE message_id = $1"

REMOVE: Final = "DELETE FROM dead_letters WHERE message_id = $1 RETURNING event_ids"

PURGE_RECEIPTS: Final = """
UPDATE event_receipts
SET status = 'rejected', reason = $2, decided_at = now()
WHERE event_id = ANY($1::uuid[]) AND status = 'accepted'
"""

PURGED_REASON: Final = "purged by an operator from the dead-letter queue"


async def keep(conn: asyncpg.Connection, letter: DeadLetter) -> str:
    """Store a dead letter (a repeat of one already kept is a no-op); returns its id. Another
    message that reuses a kept message id is kept under an id of its own, never dropped."""
    message_id = letter.message_id
    args = (
        letter.queue,
        letter.body,
        letter.headers,
        letter.event_ids,
        letter.event_types,
        letter.provider_id,
        letter.reason,
        letter.deliveries,
        letter.dead_lettered_at,
    )
    if await conn.fetchval(KEEP, message_id, *args) is not None:
        return message_id
    if await conn.fetchval(SAME_BODY, message_id, letter.body):
        return message_id
    message_id = f"{message_id}~{hashlib.sha256(letter.body).hexdigest()[:12]}"
    await conn.fetchval(KEEP, message_id, *args)
    return message_id


def item(row: asyncpg.Record) -> dict[str, Any]:
    """A dead letter as `dlq list` prints it."""
    return {
        "message_id": row["message_id"],
        "queue": row["queue"],
        "event_ids": [str(e) for e in row["event_ids"]],
        "provider_id": row["provider_id"],
        "reason": row["reason"],
        # Rows kept before every dead letter was counted have none: see `dead_letter_from`.
        "deliveries": row["deliveries"] if row["deliveries"] is not None else 1,
        "dead_lettered_at": timestamp_text(row["dead_lettered_at"]),
    }


async def list_dead_letters(
    conn: asyncpg.Connection, queue: str | None = None
) -> list[dict[str, Any]]:
    return [item(r) for r in await conn.fetch(LIST, queue)]


async def get_dead_letter(conn: asyncpg.Connection, message_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, message_id)


CLEAR_NOTES: Final = """
UPDATE event_receipts SET reason = NULL
WHERE event_id = ANY($1::uuid[]) AND status = 'accepted'
"""


TAKE: Final = """
DELETE FROM dead_letters WHERE message_id = ANY($1::text[])
RETURNING message_id, queue, body, event_ids
"""


async def take_for_replay(
    conn: asyncpg.Connection, message_ids: Sequence[str]
) -> list[asyncpg.Record]:
    """Remove the dead letters about to be replayed, in `message_ids`' order (unknown ones are
    skipped); their events' receipts lose the dead-letter note and wait, `accepted`, for their
    decision. Call it inside the transaction that publishes them and commit only once the broker
    confirmed every publish: a failed publish rolls the rows back, and a replayed message that
    is dead-lettered again before the commit is kept after it (its insert waits for this
    transaction), instead of being deleted by it."""
    rows = {r["message_id"]: r for r in await conn.fetch(TAKE, list(message_ids))}
    event_ids = [e for r in rows.values() for e in r["event_ids"]]
    if event_ids:
        await conn.execute(CLEAR_NOTES, event_ids)
    return [rows[m] for m in message_ids if m in rows]


async def purge(conn: asyncpg.Connection, message_ids: Sequence[str]) -> int:
    """Drop dead letters for good: their events' receipts end `rejected`; returns how many."""
    purged = 0
    async with conn.transaction():
        for message_id in message_ids:
            event_ids = await conn.fetchval(REMOVE, message_id)
            if event_ids is None:
                continue
            purged += 1
            if event_ids:
                await conn.execute(PURGE_RECEIPTS, event_ids, PURGED_REASON)
    return purged
