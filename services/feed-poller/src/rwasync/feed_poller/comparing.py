"""The snapshot comparison over the database: the run's staged items joined with the provider's
stored assets, one asset id at a time, decided by `rwasync.feeds.snapshot` in bounded memory.

Two passes read the join: the plan pass (no documents) finds what decides the holds, walking only
the ids that can be deleted or duplicated; the publish pass (with documents) yields the decisions
to publish. Between them the stored state may move on (a push), so the publish pass decides
afresh, and its decisions are the ones published and counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from rwasync.feed_poller import queries
from rwasync.feeds.snapshot import (
    Comparison,
    Decision,
    FeedRow,
    Listing,
    ListingGrouper,
    StoredAsset,
    Tally,
    base_version,
)

CURSOR_PREFETCH = 2000


@dataclass(frozen=True, slots=True)
class RowPayload:
    """What the publish pass carries for a feed row."""

    document: bytes | None
    price: tuple[Any, str, Any] | None
    # An unchanged item's document taken from its tombstone (same content hash).
    stored_document: bytes | None
    # A live asset's item listed with this price by the feed's previous `ok` run, which sent it
    # (`queries.MARK_PRICES_WITHHELD`).
    price_sent_before: bool = False


def _stored(row: asyncpg.Record, publishing: bool) -> StoredAsset | None:
    """The stored row; `publishing`: with what only the publish pass reads (which tells an update
    from an unchanged item: `queries.JOINED_FOR_PUBLISH`)."""
    if not row["is_stored"]:
        return None
    stored = StoredAsset(
        asset_id=row["asset_id"],
        updated_at=row["stored_updated_at"],
        deleted=row["stored_deleted"],
        accepted_at=row["stored_accepted_at"],
        event_id=row["stored_event_id"],
        source=row["stored_source"],
        content_hash=row["stored_content_hash"],
        pending_push_at=row["stored_pending_push_at"],
        listed_elsewhere=row["stored_listed_elsewhere"],
    )
    if not publishing:
        return stored
    return replace(
        stored,
        document_updated_at=row["stored_document_updated_at"],
        base_version=base_version(row, "stored_base_"),
        base_content_hash=row["stored_base_content_hash"],
    )


def _feed_row(row: asyncpg.Record, with_payload: bool) -> FeedRow | None:
    if row["item_index"] is None:
        return None
    payload = None
    if with_payload:
        amount = row["price_amount"]
        payload = RowPayload(
            document=row["document"],
            price=(amount, row["price_currency"], row["price_as_of"])
            if amount is not None
            else None,
            stored_document=row["stored_document"],
            price_sent_before=row["price_sent_before"],
        )
    return FeedRow(
        index=row["item_index"],
        valid=row["valid"],
        updated_at=row["updated_at"],
        content_hash=row["content_hash"],
        payload=payload,
    )


@dataclass(slots=True)
class Settled:
    """How many of a pass's assets were settled in SQL (`queries.COUNT_SETTLED`: listed once,
    validly, with the stored live content and no price): unchanged, and never walked."""

    count: int = 0


async def decisions(
    conn: asyncpg.Connection,
    *,
    run_id: str,
    provider_id: str,
    comparison: Comparison,
    settled: Settled,
) -> AsyncGenerator[tuple[Decision, Listing], None]:
    """The publish pass: every asset id's decision, in id order, but for the settled ones, which
    are counted into `settled` first. One snapshot for both (repeatable read), so that a push
    landing in between cannot leave an asset both counted and walked, or neither."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        settled.count = await conn.fetchval(queries.COUNT_SETTLED, run_id, provider_id)
        walk = _walk(
            conn, queries.JOINED_FOR_PUBLISH, run_id, provider_id, comparison, with_documents=True
        )
        async with contextlib.aclosing(walk):  # closed with the transaction, however this ends
            async for found in walk:
                yield found


async def _walk(
    conn: asyncpg.Connection,
    query: str,
    run_id: str,
    provider_id: str,
    comparison: Comparison,
    *,
    with_documents: bool,
) -> AsyncGenerator[tuple[Decision, Listing], None]:
    grouper = ListingGrouper()
    async for row in conn.cursor(query, run_id, provider_id, prefetch=CURSOR_PREFETCH):
        feed_row, stored = _feed_row(row, with_documents), _stored(row, with_documents)
        listing = grouper.add(row["asset_id"], feed_row, stored)
        if listing is not None:
            yield comparison.decide(listing), listing
    last = grouper.flush()
    if last is not None:
        yield comparison.decide(last), last


@dataclass(frozen=True, slots=True)
class Plan:
    """What decides a run's holds: its deletions, the provider's live assets, and the
    superseded duplicates (as `Tally.superseded`)."""

    deletions: int
    live: int
    superseded: list[tuple[int, str, int]]


async def plan(
    conn: asyncpg.Connection,
    *,
    run_id: str,
    provider_id: str,
    comparison: Comparison,
    keep: int,
) -> Plan:
    """The plan pass: the ids that can be deleted or duplicated, decided, and the live assets
    counted, in one snapshot (`queries.JOINED_FOR_PLAN`)."""
    found = Tally(keep=keep)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        live = await conn.fetchval(queries.COUNT_LIVE, provider_id)
        walk = _walk(
            conn, queries.JOINED_FOR_PLAN, run_id, provider_id, comparison, with_documents=False
        )
        async with contextlib.aclosing(walk):
            async for decision, listing in walk:
                found.add(decision, listing.stored)
    return Plan(found.deletions, live, found.superseded)
