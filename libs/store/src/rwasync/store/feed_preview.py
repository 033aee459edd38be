"""The feed validation preview (`POST /v1/validate/feed`): the same fetch, parse and validation
as a real run, compared with the provider's stored assets, reporting what a run would create,
update, leave unchanged and delete, and the hold or failure that would apply. It never writes:
it reads the stored state and keeps the feed's rows (ids, versions, hashes; no documents) in
memory, so its cost grows with the feed's item count.
"""

from __future__ import annotations

import asyncio
import gzip
import io
from typing import IO, Any

import asyncpg

from rwasync.feeds.fetch import GZIP_MAGIC, GZIP_TWICE, FetchFailed, FetchLimits, download
from rwasync.feeds.items import ItemError
from rwasync.feeds.reading import BATCH_ITEMS, feed_facts, take, validate_records
from rwasync.feeds.records import FeedInvalid, read_records
from rwasync.feeds.snapshot import (
    Comparison,
    FeedRow,
    StoredAsset,
    Tally,
    base_version,
    hold_verdict,
    item_errors,
    listings,
)
from rwasync.schema.addresses import AddressPolicy
from rwasync.schema.errors import MAX_ITEM_BYTES
from rwasync.schema.feeds import (
    DEFAULT_DELETION_THRESHOLD,
    DeletionThreshold,
    FeedFormat,
    ReasonCode,
)
from rwasync.schema.timestamps import timestamp_text, utc_now
from rwasync.store.feed_settings import FeedSettings
from rwasync.store.feeds import LISTED_BY_ANOTHER_FEED
from rwasync.store.receipts import PENDING_PUSHES

STORED_STATE = f"""
SELECT s.asset_id, updated_at, deleted, accepted_at, event_id, source, content_hash,
       p.pending_at AS pending_push_at,
       NOT deleted AND {LISTED_BY_ANOTHER_FEED.format(provider="$1", feed="$2::text")}
           AS listed_elsewhere,
       CASE WHEN source = 'feed' AND NOT deleted THEN (document->>'updated_at')::timestamptz END
           AS document_updated_at,
       base_updated_at, base_deleted, base_accepted_at, base_event_id, base_content_hash
FROM asset_state s
LEFT JOIN ({PENDING_PUSHES.format(provider="$1")}) p ON p.asset_id = s.asset_id
WHERE s.provider_id = $1
"""

# The snapshot time of the feed's latest applied run (NULL for a feed not registered yet).
LAST_APPLIED_SNAPSHOT = """
SELECT max(r.snapshot_time) FROM feed_runs r
WHERE r.feed_id = $1 AND r.provider_id = $2 AND r.status = 'ok'
"""

# The instant after which pushes are protected, as the feed's next run would see it.
PROTECTED_AFTER = """
SELECT COALESCE(
    (SELECT max(started_at) FROM feed_runs
     WHERE feed_id = $1 AND status IN ('ok', 'held')),
    (SELECT created_at FROM feed_sources WHERE feed_id = $1 AND provider_id = $2),
    now()
)
"""


def _stored(row: asyncpg.Record) -> StoredAsset:
    fields = {k: v for k, v in row.items() if not k.startswith("base_")}
    return StoredAsset(
        **fields,
        base_version=base_version(row, "base_"),
        base_content_hash=row["base_content_hash"],
    )


def _failed(code: str, reason: str) -> dict[str, Any]:
    return {"valid": False, "status": "failed", "reason_code": code, "reason": reason}


async def preview_url(
    conn: asyncpg.Connection,
    *,
    provider_id: str,
    settings: FeedSettings,
    policy: AddressPolicy,
    limits: FetchLimits,
    max_items: int = 2_000_000,
    max_item_bytes: int = MAX_ITEM_BYTES,
    max_errors: int = 1000,
    feed_id: str | None = None,
) -> dict[str, Any]:
    """Preview the feed at `settings.url` (its format, auth and threshold as given)."""
    try:
        downloaded = await download(
            settings.url, policy, limits, headers=settings.auth.request_headers()
        )
    except FetchFailed as exc:
        return _failed(exc.reason_code, exc.reason)
    try:
        with downloaded.open_decoded() as stream:
            return await _preview(
                conn,
                stream,
                provider_id=provider_id,
                fmt=settings.format,
                threshold=settings.threshold,
                last_modified=downloaded.last_modified_at,
                fetched_at=downloaded.started_at,
                max_items=max_items,
                max_item_bytes=max_item_bytes,
                max_errors=max_errors,
                feed_id=feed_id,
            )
    finally:
        downloaded.discard()


async def preview_body(
    conn: asyncpg.Connection,
    body: bytes,
    *,
    provider_id: str,
    fmt: FeedFormat = FeedFormat.JSON,
    gzipped: bool = False,
    content_decoded: bool = False,
    threshold: DeletionThreshold = DEFAULT_DELETION_THRESHOLD,
    max_decoded_bytes: int = 2 * 1024**3,
    max_items: int = 2_000_000,
    max_item_bytes: int = MAX_ITEM_BYTES,
    max_errors: int = 1000,
    feed_id: str | None = None,
) -> dict[str, Any]:
    """Preview a feed body sent inline, gzip-compressed if `gzipped` or if it starts as gzip
    does, as a run decodes a body it fetched (`rwasync.feeds.fetch.GZIP_MAGIC`): once, and a body
    that is gzip again once decoded fails as the run's would (`GZIP_TWICE`). `content_decoded`:
    the HTTP layer already took off a `Content-Encoding: gzip`, the one layer a run takes off."""
    stream: IO[bytes] = io.BytesIO(body)
    if content_decoded:
        stream = io.BufferedReader(_Capped(stream, max_decoded_bytes))  # (it checks the magic)
    elif gzipped or body.startswith(GZIP_MAGIC):
        capped = _Capped(gzip.GzipFile(fileobj=stream), max_decoded_bytes)  # type: ignore[arg-type]
        stream = io.BufferedReader(capped)  # type: ignore[assignment]
    return await _preview(
        conn,
        stream,
        provider_id=provider_id,
        fmt=fmt,
        threshold=threshold,
        last_modified=None,
        fetched_at=utc_now(),
        max_items=max_items,
        max_item_bytes=max_item_bytes,
        max_errors=max_errors,
        feed_id=feed_id,
    )


class _Capped(io.RawIOBase):
    """A decoded stream that stops at the decoded-size cap (a gzip bomb goes no further), and
    that fails at once when it starts as gzip again."""

    def __init__(self, inner: IO[bytes], cap: int) -> None:
        self._inner, self._cap, self._read = inner, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except (OSError, EOFError) as exc:
            raise FeedInvalid(ReasonCode.PARSE_ERROR, f"the gzip body is corrupt: {exc}") from None
        if self._read == 0 and data.startswith(GZIP_MAGIC):
            raise FeedInvalid(ReasonCode.PARSE_ERROR, GZIP_TWICE)
        self._read += len(data)
        if self._read > self._cap:
            raise FeedInvalid(
                ReasonCode.SIZE_LIMIT,
                f"the decoded feed is larger than the cap of {self._cap} bytes",  # as a run says
            )
        buffer[: len(data)] = data
        return len(data)


async def _preview(
    conn: asyncpg.Connection,
    stream: IO[bytes],
    *,
    provider_id: str,
    fmt: FeedFormat,
    threshold: DeletionThreshold,
    last_modified: Any,
    fetched_at: Any,
    max_items: int,
    max_item_bytes: int,
    max_errors: int,
    feed_id: str | None,
) -> dict[str, Any]:
    now = utc_now()
    rows: list[tuple[str, FeedRow]] = []
    errors: list[ItemError] = []
    seen = invalid = unidentified = 0
    try:
        reader = read_records(fmt, stream)
        while batch := await asyncio.to_thread(
            take, reader.records, BATCH_ITEMS, seen=seen, max_items=max_items
        ):
            seen += len(batch)
            validated = await asyncio.to_thread(validate_records, batch, now, max_item_bytes)
            for result in validated:
                if isinstance(result, ItemError):
                    invalid += 1
                    if len(errors) < max_errors:
                        errors.append(result)
                    if result.stored_id is not None:
                        rows.append((result.stored_id, FeedRow(result.index, False)))
                    else:
                        unidentified += 1
                else:
                    rows.append(
                        (result.asset_id,
                         FeedRow(result.index, True, result.updated_at, result.content_hash))
                    )  # fmt: skip
        facts = feed_facts(
            reader.header, last_modified=last_modified, fetched_at=fetched_at, now=utc_now()
        )
    except FeedInvalid as exc:
        return _failed(exc.reason_code, exc.reason)
    stored = [_stored(r) for r in await conn.fetch(STORED_STATE, provider_id, feed_id)]
    protected_after = await conn.fetchval(PROTECTED_AFTER, feed_id, provider_id)
    comparison = Comparison(facts.snapshot_time, protected_after)
    tally = Tally(keep=max_errors)
    for listing in listings(rows, stored):
        tally.add(comparison.decide(listing), listing.stored)
    verdict = hold_verdict(
        seen=seen,
        invalid=invalid,
        total_assets=facts.total_assets,
        deletions=tally.deletions,
        live=tally.live,
        threshold=threshold,
        snapshot_time=facts.snapshot_time,
        last_applied=await conn.fetchval(LAST_APPLIED_SNAPSHOT, feed_id, provider_id),
        unidentified=unidentified,
    )
    if verdict is not None and verdict.failed and invalid < seen:
        # A file that fails is answered as one: what its items would do is not the question.
        return _failed(verdict.reason_code, verdict.reason)
    preview: dict[str, Any] = {
        "valid": invalid == 0 and (verdict is None or not verdict.failed),
        "status": "ok" if verdict is None else ("failed" if verdict.failed else "held"),
        "snapshot_time": timestamp_text(facts.snapshot_time),
        "total_assets": facts.total_assets,
        "counts": {"seen": seen, "invalid": invalid},
        "preview": {
            "create": tally.created,
            "update": tally.updated,
            "unchanged": tally.unchanged,
            "delete": tally.deletions,
        },
        "errors": item_errors([e.as_dict() for e in errors], tally.superseded, max_errors),
    }
    if verdict is not None:
        preview["reason_code"] = str(verdict.reason_code)
        preview["reason"] = verdict.reason
    return preview
