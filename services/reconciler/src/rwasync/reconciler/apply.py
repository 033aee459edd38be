"""Applying asset events in one transaction per batch (docs/api.md, "Versions and ordering").

Assets without merge patches (nearly all) go through one guarded set-based merge of the batch's
newest event per asset. Assets that a batch patches, or that keep patches from earlier, are
folded in version order onto their locked rows (`folding`). Either way every event gets its
receipt and every applied change its entry in `asset_changes`, in the same transaction.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any, Final

import asyncpg
import orjson
import structlog

from rwasync.platform.db import Database, LockSpace, lock_stripes, settle, stripe_shares
from rwasync.platform.metrics import EVENTS_DECIDED
from rwasync.reconciler import queries
from rwasync.reconciler.folding import apply_folded
from rwasync.reconciler.patch_state import AssetEvent
from rwasync.schema.events import (
    AssetDeleted,
    AssetPatched,
    AssetUpserted,
    EventType,
    PriceUpdated,
)
from rwasync.schema.raw_events import (
    ConsumedEvent,
    RawAssetDeleted,
    RawAssetPatched,
    RawAssetUpserted,
    event_model,
)
from rwasync.schema.versions import event_version, newest_per_key
from rwasync.store import receipts

log = structlog.get_logger(__name__)

# Events decoded raw (documents as text) or, for a message the raw decoder left to pydantic, the
# models (rwasync.schema.raw_events): both take the plain path; folding takes the models.
AssetChange = AssetUpserted | AssetDeleted | RawAssetUpserted | RawAssetDeleted
AnyAssetEvent = AssetEvent | RawAssetUpserted | RawAssetPatched | RawAssetDeleted
AssetKey = tuple[str, str]


class EventNotApplicable(Exception):
    """An event this service can never apply (wrong type, inconsistent payload): dead-letter it."""


def asset_key(event: AnyAssetEvent) -> AssetKey:
    return (event.provider_id, event.asset_id)


def newest_per_asset(events: Sequence[AssetChange]) -> tuple[list[AssetChange], list[AssetChange]]:
    """The newest event of each asset in a batch, and the ones they supersede."""
    return newest_per_key(events, key=asset_key, order=event_version, identity=lambda e: e.event_id)


def _check(event: ConsumedEvent) -> AnyAssetEvent:
    # Raw events first: an isinstance check against a pydantic model goes through ABCMeta's.
    if isinstance(event, RawAssetUpserted):
        document_id = event.payload.document_id
    elif isinstance(event, RawAssetPatched | RawAssetDeleted):
        return event
    elif isinstance(event, PriceUpdated):
        raise EventNotApplicable(f"{event.type} does not belong on the asset queue")
    elif isinstance(event, AssetUpserted):
        document_id = event.payload.document.get("id")
    else:
        return event
    if document_id != event.asset_id:
        raise EventNotApplicable("document id differs from the event's asset_id")
    return event


def _folded_model(event: AnyAssetEvent) -> AssetEvent:
    """The model of an event to fold: the folding path works on documents as dicts."""
    model = event_model(event)
    assert isinstance(model, AssetUpserted | AssetPatched | AssetDeleted)  # as `_check` found
    return model


def _incoming(
    newest: Sequence[AssetChange], superseded: Sequence[AssetChange]
) -> list[tuple[Any, ...]]:
    """The rows COPY stages: every event of the plain path, the newest of each asset flagged."""
    rows: list[tuple[Any, ...]] = []
    flagged = [(e, True) for e in newest] + [(e, False) for e in superseded]
    for position, (event, is_newest) in enumerate(flagged):
        document = digest = status = None
        if isinstance(event, RawAssetUpserted):
            document = event.payload.document_json
            digest = event.payload.digest
            status = event.payload.status
        elif isinstance(event, AssetUpserted):
            document = orjson.dumps(event.payload.document).decode()
            digest = bytes.fromhex(event.payload.content_hash)
            status = event.payload.document.get("status")
        rows.append(
            (
                event.provider_id,
                event.asset_id,
                event.updated_at,
                document is None,
                event.accepted_at,
                event.event_id,
                str(event.source),
                document,
                digest,
                status,
                str(event.type),
                is_newest,
                position,
                event.trace_id,
            )
        )
    return rows


# Advisory-lock stripes of the asset key space: at most this many locks per transaction.
ASSET_LOCK_STRIPES: Final = 128


# Batches smaller than this apply in one transaction whatever the shares.
_SHARED_FROM: Final = 64


def _stripe_key(key: AssetKey) -> str:
    return f"{key[0]}/{key[1]}"


class AssetApplier:
    """Applies a batch of asset events, the consumer retrying and splitting it when that fails.

    A batch of hundreds of keys takes nearly every lock stripe, so its transaction would wait for
    every other batch's (of this replica or another): one Postgres backend at work at a time. So
    the stripes are dealt into `shares` (stripe modulo shares) and a batch applies as one
    transaction per share, side by side, each taking only its share's stripes: batches then
    serialise per share, not as a whole, and `shares` backends work at once. An asset's events
    always fall in one share (its stripe's), so its changes stay serialised and in order. A share
    that fails fails the batch after the others ended; the retry finds what they committed decided
    already (idempotent), so nothing is applied twice and nothing is lost.
    """

    def __init__(self, db: Database, *, shares: int = 1) -> None:
        if not 1 <= shares <= ASSET_LOCK_STRIPES:
            raise ValueError(f"shares must be between 1 and {ASSET_LOCK_STRIPES}")
        self._db = db
        self._shares = shares

    async def apply(self, events: Sequence[ConsumedEvent]) -> None:
        changes = [_check(e) for e in events]
        if self._shares == 1 or len(changes) < _SHARED_FROM:
            await self._apply_share(changes)
            return
        keys = [_stripe_key(asset_key(e)) for e in changes]
        share_of = await stripe_shares(self._db.pool, keys, ASSET_LOCK_STRIPES, self._shares)
        shares: list[list[AnyAssetEvent]] = [[] for _ in range(self._shares)]
        for event, key in zip(changes, keys, strict=True):
            shares[share_of[key]].append(event)
        await settle(*(self._apply_share(share) for share in shares if share))

    async def _apply_share(self, changes: list[AnyAssetEvent]) -> None:
        """Applies these events in one transaction, under their stripes."""
        keys = list(dict.fromkeys(asset_key(e) for e in changes))
        # Assets this batch patches are folded; so are those that keep patches from before,
        # which the merge finds and leaves alone ("deferred").
        patched = {asset_key(e) for e in changes if e.type == EventType.ASSET_PATCHED}
        plain: list[AssetChange] = [
            e
            for e in changes
            if not isinstance(e, RawAssetPatched | AssetPatched) and asset_key(e) not in patched
        ]
        # Staged rows are built before the stripes are taken: other replicas wait on those for
        # as long as this transaction holds them, not for this process's Python. So are the
        # models the patched assets fold (only the deferred assets' are made under the stripes).
        staged = _incoming(*newest_per_asset(plain)) if plain else []
        models = {id(e): _folded_model(e) for e in changes if asset_key(e) in patched}
        stripe_keys = [_stripe_key(k) for k in keys]
        async with self._db.connection() as conn:
            if staged:
                # The staging table, before the transaction: a round trip fewer under the
                # stripes (other batches wait on them through every one of this process's round
                # trips), and the connection's first batch, which creates it (a catalog write),
                # still gets its transaction id only under its stripes.
                await conn.execute(queries.CREATE_INCOMING)
            async with conn.transaction():
                # Stripes, not one lock per asset: a batch of thousands of keys must not exhaust
                # Postgres' shared lock table; and the change feed's horizon is read off them.
                await lock_stripes(conn, stripe_keys, LockSpace.ASSETS, ASSET_LOCK_STRIPES)
                outcomes, deferred = (
                    await self._merge(conn, staged) if staged else (Tally[tuple[str, str]](), set())
                )
                folding = patched | deferred
                folded = [
                    models.get(id(e)) or _folded_model(e)
                    for e in changes
                    if asset_key(e) in folding
                ]
                if folded:
                    decisions = await apply_folded(conn, folded)
                    await receipts.record_decisions(conn, decisions)
                    outcomes.update((d.type, str(d.status)) for d in decisions)
        for (kind, status), count in outcomes.items():
            EVENTS_DECIDED.labels(kind, status).inc(count)
        log.debug("asset events applied", events=len(changes), folded=len(folded))

    async def _merge(
        self, conn: asyncpg.Connection, staged: list[tuple[Any, ...]]
    ) -> tuple[Tally[tuple[str, str]], set[AssetKey]]:
        """The plain path: stage with COPY (`_incoming`'s rows) into the table `CREATE_INCOMING`
        made, then one statement merges, records the receipts and the change entries. Returns
        how many events of each type ended how, and the assets that turned out to keep patches
        (left for the folding path)."""
        await conn.copy_records_to_table(
            "incoming_asset_events", records=staged, columns=queries.INCOMING_COLUMNS
        )
        outcomes: Tally[tuple[str, str]] = Tally()
        deferred: set[AssetKey] = set()
        # Planned afresh for every batch (a statement prepared once keeps the plan made for the
        # first batch: made against empty tables, it joined by scanning them whole, which costs
        # more with every row they gain). Planning costs about a millisecond per batch.
        merge = await conn.prepare(queries.APPLY_INCOMING)
        for row in await merge.fetch():
            if row["outcome"] == "deferred":
                deferred.add((row["provider_id"], row["asset_id"]))
            elif row["unwritten"]:
                # The classification and the guarded write disagree: only possible if the
                # advisory lock did not hold. Fail the batch rather than record false receipts.
                raise RuntimeError(f"{row['unwritten']} events classified written but not")
            else:
                outcomes[(row["event_type"], row["outcome"])] += row["events"]
        return outcomes, deferred

    async def note_dead_lettered(self, events: Sequence[ConsumedEvent], reason: str) -> None:
        await receipts.note_dead_lettered(self._db.pool, events, reason)
