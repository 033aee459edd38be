"""Reading a fetched feed body into validated items (pure, no I/O).

A format reader turns the body into a `RawFeed` (snapshot time, announced total, raw records);
then every record is validated as an asset document, the invalid ones reported by index (and id
when they have one), and duplicate ids resolved: the latest `updated_at` wins, at equal the later
in the file. Only the JSON envelope is read so far; JSON arrays, JSON Lines and CSV plug into
`FORMAT_READERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic_core import PydanticCustomError

from rwasync.schema.asset import content_hash, normalized_document, parse_asset
from rwasync.schema.errors import AssetInvalid, FieldError
from rwasync.schema.feeds import FeedFormat, ReasonCode
from rwasync.schema.fields import as_utc_datetime
from rwasync.schema.jsonsafe import MalformedJSON, loads
from rwasync.schema.timestamps import MAX_FUTURE_SKEW, timestamp_text, too_far_ahead


class FeedInvalid(Exception):
    """The feed as a whole cannot be used; `reason_code` says why, as the run records it."""

    def __init__(self, reason_code: ReasonCode, reason: str) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RawFeed:
    """What a format reader gives: the records still unvalidated."""

    # The feed's own generation time, if the format carries one.
    snapshot_time: datetime | None
    # How many items the feed says it holds, if the format says.
    total_assets: int | None
    records: list[Any]


@dataclass(frozen=True, slots=True)
class FeedItem:
    """A valid feed item: its normalised document, content hash and the provider's updated_at."""

    index: int
    asset_id: str
    updated_at: datetime
    document: dict[str, Any]
    content_hash: bytes


@dataclass(frozen=True, slots=True)
class ItemError:
    """A feed item left out of the run: invalid, or superseded by a newer item with its id."""

    index: int
    asset_id: str | None
    errors: tuple[FieldError, ...]

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": self.index}
        if self.asset_id is not None:
            entry["id"] = self.asset_id
        entry["errors"] = [e.as_dict() for e in self.errors]
        return entry


@dataclass(frozen=True)
class ParsedFeed:
    snapshot_time: datetime
    total_assets: int | None
    # Items read, valid or not.
    seen: int
    # Valid items, one per id (duplicates resolved), in file order of the winners.
    items: list[FeedItem]
    # Invalid and superseded items, by index.
    errors: list[ItemError]
    # Items that failed validation (superseded duplicates are valid, so not counted here).
    invalid: int
    # The ids of invalid items that carry a string id: such assets are never treated as missing.
    invalid_ids: frozenset[str] = field(default_factory=frozenset)


# --- format readers -----------------------------------------------------------------------------


def _decode_json(body: bytes) -> Any:
    try:
        return loads(body)
    except MalformedJSON as exc:
        raise FeedInvalid(
            ReasonCode.PARSE_ERROR, f"the feed is not valid JSON: {exc.detail}"
        ) from None


def _snapshot_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise FeedInvalid(
            ReasonCode.PARSE_ERROR, "`timestamp` must be an RFC 3339 string with an offset"
        )
    try:
        return as_utc_datetime(value)
    except PydanticCustomError as exc:
        raise FeedInvalid(ReasonCode.PARSE_ERROR, f"`timestamp` {exc.message()}") from None


def read_json_envelope(body: bytes) -> RawFeed:
    """`{"timestamp": ..., "total_assets": N, "assets": [...]}`; the first two are required."""
    document = _decode_json(body)
    if not isinstance(document, dict):
        raise FeedInvalid(
            ReasonCode.PARSE_ERROR,
            'the feed must be a JSON object {"timestamp", "total_assets", "assets": [...]}',
        )
    missing = [key for key in ("timestamp", "total_assets", "assets") if key not in document]
    if missing:
        raise FeedInvalid(
            ReasonCode.PARSE_ERROR,
            f"the feed envelope lacks {', '.join(f'`{k}`' for k in missing)}",
        )
    total = document["total_assets"]
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise FeedInvalid(ReasonCode.PARSE_ERROR, "`total_assets` must be an integer ≥ 0")
    records = document["assets"]
    if not isinstance(records, list):
        raise FeedInvalid(ReasonCode.PARSE_ERROR, "`assets` must be an array")
    return RawFeed(
        snapshot_time=_snapshot_timestamp(document["timestamp"]),
        total_assets=total,
        records=records,
    )


FORMAT_READERS: dict[str, Callable[[bytes], RawFeed]] = {FeedFormat.JSON: read_json_envelope}


# --- validation ---------------------------------------------------------------------------------


def _record_id(record: Any) -> str | None:
    if isinstance(record, dict):
        value = record.get("id")
        if isinstance(value, str):
            return value
    return None


def parse_feed(
    body: bytes,
    fmt: str = FeedFormat.JSON,
    *,
    now: datetime,
    max_items: int,
    default_snapshot_time: datetime | None = None,
) -> ParsedFeed:
    """Read and validate a feed body. Raises FeedInvalid when the whole feed is unusable.

    `default_snapshot_time` stands in for formats without a timestamp (docs/api.md, "Feeds":
    the response's `Last-Modified`, else the fetch start).
    """
    reader = FORMAT_READERS.get(fmt)
    if reader is None:
        raise FeedInvalid(ReasonCode.PARSE_ERROR, f"feed format {fmt!r} is not supported yet")
    raw = reader(body)
    snapshot_time = raw.snapshot_time or default_snapshot_time
    if snapshot_time is None:
        raise FeedInvalid(ReasonCode.PARSE_ERROR, "the feed has no snapshot time")
    if too_far_ahead(snapshot_time, now):
        minutes = int(MAX_FUTURE_SKEW.total_seconds() // 60)
        raise FeedInvalid(
            ReasonCode.FUTURE_TIMESTAMP,
            f"the feed's timestamp {timestamp_text(snapshot_time)} is more than {minutes} minutes "
            "in the future",
        )
    if len(raw.records) > max_items:
        raise FeedInvalid(
            ReasonCode.SIZE_LIMIT,
            f"the feed has {len(raw.records)} items, over the cap of {max_items}",
        )

    errors: list[ItemError] = []
    invalid_ids: set[str] = set()
    winners: dict[str, FeedItem] = {}
    losers: dict[str, list[FeedItem]] = {}
    for index, record in enumerate(raw.records):
        try:
            asset = parse_asset(record, now=now)
        except AssetInvalid as exc:
            asset_id = _record_id(record)
            if asset_id is not None:
                invalid_ids.add(asset_id)
            errors.append(ItemError(index, asset_id, tuple(exc.errors)))
            continue
        document = normalized_document(asset)
        item = FeedItem(index, asset.id, asset.updated_at, document, content_hash(document))
        current = winners.get(item.asset_id)
        if current is None:
            winners[item.asset_id] = item
        elif item.updated_at >= current.updated_at:
            # The latest updated_at wins; at equal, the later in the file.
            losers.setdefault(item.asset_id, []).append(current)
            winners[item.asset_id] = item
        else:
            losers.setdefault(item.asset_id, []).append(item)
    invalid = len(errors)
    for asset_id, superseded in losers.items():
        winner = winners[asset_id].index
        errors.extend(
            ItemError(
                item.index,
                asset_id,
                (FieldError("/id", f"duplicate id {asset_id!r}: superseded by index {winner}"),),
            )
            for item in superseded
        )
    errors.sort(key=lambda e: e.index)
    return ParsedFeed(
        snapshot_time=snapshot_time,
        total_assets=raw.total_assets,
        seen=len(raw.records),
        items=sorted(winners.values(), key=lambda i: i.index),
        errors=errors,
        invalid=invalid,
        invalid_ids=frozenset(invalid_ids),
    )
