"""Event receipts: the shared ledger of what became of each accepted event.

ingest-api records `accepted` after the broker confirmed; the consumer that decides an event
(reconciler or pricing) moves it out of `accepted` exactly once, in the same transaction as its
effect. A decided receipt never changes again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

import asyncpg

from rwasync.schema.event_ids import first_event_id_at
from rwasync.schema.events import EventLike, ReceiptStatus
from rwasync.schema.messages import WireEvent

# A provider's pushes accepted (202) but not yet decided, the newest per asset: what the stored
# state does not show yet, and a feed run must not undo (`{provider}`: the provider's parameter).
# Only pushes leave an asset event `accepted` and undecided: feed events get their receipt when
# decided, and a dead-lettered event (a push's or a feed's) has a reason, and is left out, as
# it will not be applied unless an operator replays it (index: event_receipts_pending_pushes).
PENDING_PUSHES = """
SELECT asset_id, max(accepted_at) AS pending_at FROM event_receipts
WHERE status = 'accepted' AND provider_id = {provider} AND type <> 'price.updated'
  AND reason IS NULL
GROUP BY asset_id"""

# ingest-api's `accepted` receipts. Its event ids are new, so a receipt is there already only
# when the consumer decided the event first (it records the decided receipt itself): rare. So
# they go in by a plain INSERT, and only a batch that meets one is inserted again with
# `ON CONFLICT DO NOTHING`, whose speculative insertion costs ~1.4 µs more per receipt (5.3
# against 3.9 ms per 1,000 in a 60,000-receipt table, 2026-11-30).
RECORD_ACCEPTED = """
INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status, accepted_at, trace_id)
SELECT e, p, a, t, 'accepted', ts, nullif(tr, '')
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
     AS u(e, p, a, t, ts, tr)
"""


def decisions_insert(source: str) -> str:
    """The statement recording decided receipts from `source`, a relation with the columns
    (e, p, a, t, s, r, l, ts, tr): event id, provider, asset, type, status, reason, latest,
    accepted_at, trace id. One text for every caller, so that a consumer may fold it into its own
    statement (pricing's apply does) and still decide each event exactly once.

    The trace is written here too: the consumer may decide an event before ingest-api has
    recorded its `accepted` receipt (that insert then finds the row and leaves it)."""
    return f"""
INSERT INTO event_receipts
    (event_id, provider_id, asset_id, type, status, reason, latest, accepted_at, decided_at,
     trace_id)
SELECT e, p, a, t, s, r, l, ts, now(), nullif(tr, '')
FROM {source}
ON CONFLICT (event_id) DO UPDATE
    SET status = EXCLUDED.status, reason = EXCLUDED.reason, latest = EXCLUDED.latest,
        decided_at = EXCLUDED.decided_at,
        trace_id = coalesce(event_receipts.trace_id, EXCLUDED.trace_id)
    WHERE event_receipts.status = 'accepted'
"""


def decisions_update(source: str) -> str:
    """`decisions_insert` for the receipts that are there and still `accepted` (the usual case:
    ingest-api recorded them before the consumer got the event), as an UPDATE by key from
    `source`, a relation aliased `u` with the same columns. Cheaper per receipt than the upsert,
    which probes the key twice and locks the row (a WAL record) before updating it. It returns the
    event ids it decided: the caller runs `decisions_insert` over the rest of `source` (a receipt
    not recorded yet, or decided already), so that each event is still decided exactly once,
    whichever of ingest-api and the consumer writes first."""
    return f"""
UPDATE event_receipts
SET status = u.s, reason = u.r, latest = u.l, decided_at = now(),
    trace_id = coalesce(event_receipts.trace_id, nullif(u.tr, ''))
FROM {source}
WHERE event_receipts.event_id = u.e
  -- Not `= 'accepted'`: the planner would then read every undecided receipt through
  -- event_receipts_undecided (however many wait) and hash them, instead of one probe per key.
  AND event_receipts.status IS NOT DISTINCT FROM 'accepted'
RETURNING event_receipts.event_id
"""


RECORD_DECISIONS = decisions_insert(
    """unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[],
            $8::timestamptz[], $9::text[]) AS u(e, p, a, t, s, r, l, ts, tr)"""
)

# A batch's receipts (`AcceptedRun`): per event only its id and asset travel; the instants are
# consecutive microseconds from the first, computed exactly (timestamps are integer microseconds).
RECORD_ACCEPTED_RUN = """
INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status, accepted_at, trace_id)
SELECT e, $3, a, $4, 'accepted', $5::timestamptz + (n - 1) * interval '1 microsecond',
       nullif($6, '')
FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS u(e, a, n)
"""

_KEEPING_DECIDED: Final = "\nON CONFLICT (event_id) DO NOTHING\n"

NOTE_DEAD_LETTERED = """
INSERT INTO event_receipts (event_id, provider_id, asset_id, type, status, reason, accepted_at)
SELECT e, p, a, t, 'accepted', $6, ts
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u(e, p, a, t, ts)
ON CONFLICT (event_id) DO UPDATE SET reason = EXCLUDED.reason
    WHERE event_receipts.status = 'accepted'
"""


def price_redecisions_update(source: str) -> str:
    """The statement moving decided price receipts from `source`, a relation with the columns
    (e, s, r, l): event id, status, reason, latest (see REDECIDE_PRICE_TICKS).

    A price tick's receipt follows its sanity hold after it was decided: a hold that a late tick
    or an operator's decision lifts or imposes moves it between `held` and `applied`, an
    operator's rejection ends it `rejected`, and a held tick replaced at its as_of ends
    `stale_ignored`. Receipts of other events, and `stale_ignored`/`rejected` ones, never change
    again."""
    return f"""
UPDATE event_receipts r
SET status = u.s, reason = u.r, latest = u.l, decided_at = now()
FROM {source}
WHERE r.event_id = u.e AND r.type = 'price.updated'
  AND r.status IN ('applied', 'duplicate', 'held')
"""


REDECIDE_PRICE_TICKS = price_redecisions_update(
    "unnest($1::uuid[], $2::text[], $3::text[], $4::bool[]) AS u(e, s, r, l)"
)

# Forgets up to $4 decided receipts with ids after $1 and before $2 that were accepted before $3,
# in id order, and returns how many and the last id it went through (where the next chunk goes
# on). A receipt still `accepted` (undecided or dead-lettered) or `held` is kept whatever its age.
# SKIP LOCKED: several pruning processes share the work instead of queueing on each other's rows.
PRUNE_DECIDED = """
WITH doomed AS (
    SELECT event_id FROM event_receipts
    WHERE event_id > $1 AND event_id < $2 AND accepted_at < $3
      AND status NOT IN ('accepted', 'held')
    ORDER BY event_id
    LIMIT $4
    FOR UPDATE SKIP LOCKED
),
removed AS (
    DELETE FROM event_receipts r USING doomed d WHERE r.event_id = d.event_id
    RETURNING r.event_id
)
SELECT (SELECT count(*) FROM removed) AS removed,
       (SELECT event_id FROM doomed ORDER BY event_id DESC LIMIT 1) AS last
"""

GET_RECEIPT = """
SELECT event_id, type, asset_id, status, reason, latest, trace_id
FROM event_receipts WHERE event_id = $1 AND provider_id = $2
"""


@dataclass(frozen=True)
class AcceptedRun:
    """The `accepted` receipts of events of one type from one request, accepted at consecutive
    microseconds from `first_accepted_at` (a batch): two arrays for asyncpg to encode instead of
    RECORD_ACCEPTED's six, the timestamps (the dearest) among those left out."""

    provider_id: str
    type: str
    trace_id: str
    first_accepted_at: datetime
    event_ids: list[UUID | str]
    asset_ids: list[str]


@dataclass(frozen=True)
class Decision:
    event_id: UUID
    provider_id: str
    asset_id: str
    type: str
    accepted_at: datetime
    status: ReceiptStatus
    reason: str | None = None
    latest: bool | None = None
    trace_id: str = ""

    @classmethod
    def of(
        cls,
        event: EventLike,
        status: ReceiptStatus,
        reason: str | None = None,
        latest: bool | None = None,
    ) -> Decision:
        return cls(
            event_id=event.event_id,
            provider_id=event.provider_id,
            asset_id=event.asset_id,
            type=str(event.type),
            accepted_at=event.accepted_at,
            status=status,
            reason=reason,
            latest=latest,
            trace_id=event.trace_id,
        )


def _columns(events: Sequence[EventLike]) -> tuple[list[object], ...]:
    return (
        [e.event_id for e in events],
        [e.provider_id for e in events],
        [e.asset_id for e in events],
        [str(e.type) for e in events],
        [e.accepted_at for e in events],
    )


async def _insert_accepted(
    conn: asyncpg.Connection | asyncpg.Pool, statement: str, *args: object
) -> None:
    """`statement` (RECORD_ACCEPTED or RECORD_ACCEPTED_RUN), a receipt found already left as it
    is. Inside a transaction the failed plain insert would abort it, so there it is not tried."""
    if isinstance(conn, asyncpg.Connection) and conn.is_in_transaction():
        await conn.execute(statement + _KEEPING_DECIDED, *args)
        return
    try:
        await conn.execute(statement, *args)
    except asyncpg.UniqueViolationError:
        await conn.execute(statement + _KEEPING_DECIDED, *args)


async def record_accepted(
    conn: asyncpg.Connection | asyncpg.Pool, events: Sequence[EventLike]
) -> None:
    """`record_accepted_wire` for validated events (the tools' and tests' form)."""
    await _insert_accepted(conn, RECORD_ACCEPTED, *_columns(events), [e.trace_id for e in events])


async def record_accepted_wire(
    conn: asyncpg.Connection | asyncpg.Pool, events: Sequence[WireEvent]
) -> None:
    """The `accepted` receipts of events in their wire form: ingest-api's path, through its
    group commit."""
    await _insert_accepted(
        conn,
        RECORD_ACCEPTED,
        [e["event_id"] for e in events],
        [e["provider_id"] for e in events],
        [e["asset_id"] for e in events],
        [str(e["type"]) for e in events],
        [e["accepted_at"] for e in events],
        [e["trace_id"] for e in events],
    )


async def record_accepted_run(conn: asyncpg.Connection | asyncpg.Pool, run: AcceptedRun) -> None:
    await _insert_accepted(
        conn,
        RECORD_ACCEPTED_RUN,
        run.event_ids,
        run.asset_ids,
        run.provider_id,
        run.type,
        run.first_accepted_at,
        run.trace_id,
    )


async def record_decisions(conn: asyncpg.Connection, decisions: Sequence[Decision]) -> None:
    if not decisions:
        return
    await conn.execute(
        RECORD_DECISIONS,
        [d.event_id for d in decisions],
        [d.provider_id for d in decisions],
        [d.asset_id for d in decisions],
        [d.type for d in decisions],
        [str(d.status) for d in decisions],
        [d.reason for d in decisions],
        [d.latest for d in decisions],
        [d.accepted_at for d in decisions],
        [d.trace_id for d in decisions],
    )


_NO_ID: Final = UUID(int=0)
_LAST_ID: Final = UUID(int=(1 << 128) - 1)


async def prune_decided(
    pool: asyncpg.Pool, accepted_before: datetime, *, chunk: int = 5000, chunks: int = 200
) -> int:
    """Forgets decided receipts accepted before `accepted_before`, `chunk` a transaction and at
    most `chunks` transactions per range of ids below; returns how many it removed (a caller that
    got a full budget's worth calls again).

    Event ids begin with the millisecond they were drawn in (`schema.events.new_event_id`), so the
    receipts old enough are one range at the start of the primary key: no index of their own,
    and pruning reads little besides what it removes. Ids drawn before ids carried their time are
    random: those that read as drawn in the past fall in that range too, and the rest, read as
    drawn in the future, are the second range (the day's margin keeps clocks that disagree out of
    it). The acceptance instant, not the id, decides: an id only finds."""
    boundaries = [
        (_NO_ID, first_event_id_at(accepted_before)),
        (first_event_id_at(datetime.now(UTC) + timedelta(days=1)), _LAST_ID),
    ]
    removed = 0
    for after, before in boundaries:
        for _ in range(chunks):
            row = await pool.fetchrow(PRUNE_DECIDED, after, before, accepted_before, chunk)
            assert row is not None
            removed += row["removed"]
            if row["last"] is None:
                break
            after = row["last"]
    return removed


async def note_dead_lettered(
    conn: asyncpg.Connection | asyncpg.Pool, events: Sequence[EventLike], reason: str
) -> None:
    await conn.execute(NOTE_DEAD_LETTERED, *_columns(events), reason)


@dataclass(frozen=True)
class Redecision:
    """A decided price receipt moving with its tick's hold."""

    event_id: UUID
    status: ReceiptStatus
    reason: str | None = None
    latest: bool | None = None


async def redecide_price_ticks(conn: asyncpg.Connection, redecisions: Sequence[Redecision]) -> None:
    """Move decided price receipts along with their ticks' holds (see REDECIDE_PRICE_TICKS)."""
    if not redecisions:
        return
    await conn.execute(
        REDECIDE_PRICE_TICKS,
        [d.event_id for d in redecisions],
        [str(d.status) for d in redecisions],
        [d.reason for d in redecisions],
        [d.latest for d in redecisions],
    )
