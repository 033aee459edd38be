"""From a decoded feed body to validated items, batch by batch, the same for a real run and for
the validation preview: frame records, skip the ones a caller already knows (by fingerprint),
validate the rest, and settle the snapshot time and announced total once the body is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic_core import PydanticCustomError

from rwasync.feeds.items import ItemError, ValidItem, validate_record
from rwasync.feeds.records import FeedHeader, FeedInvalid, RawRecord
from rwasync.schema.errors import MAX_ITEM_BYTES
from rwasync.schema.feeds import ReasonCode
from rwasync.schema.fields import as_utc_datetime
from rwasync.schema.timestamps import MAX_FUTURE_SKEW, timestamp_text, too_far_ahead

BATCH_ITEMS: Final = 1000


def take(records: Iterator[RawRecord], count: int, *, seen: int, max_items: int) -> list[RawRecord]:
    """The next `count` records (fewer at the end); the item cap holds across calls."""
    batch: list[RawRecord] = []
    for record in records:
        batch.append(record)
        if seen + len(batch) > max_items:
            raise FeedInvalid(
                ReasonCode.SIZE_LIMIT, f"the feed has more than {max_items} items, over the cap"
            )
        if len(batch) == count:
            break
    return batch


def validate_records(
    records: Sequence[RawRecord], now: datetime, max_item_bytes: int = MAX_ITEM_BYTES
) -> list[ValidItem | ItemError]:
    return [validate_record(record, now=now, max_item_bytes=max_item_bytes) for record in records]


@dataclass(frozen=True)
class FeedFacts:
    """The snapshot time a run compares at, and the total the feed announces (if it does)."""

    snapshot_time: datetime
    total_assets: int | None


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise FeedInvalid(
            ReasonCode.PARSE_ERROR, "`timestamp` must be an RFC 3339 string with an offset"
        )
    try:
        return as_utc_datetime(value)
    except PydanticCustomError as exc:
        raise FeedInvalid(ReasonCode.PARSE_ERROR, f"`timestamp` {exc.message()}") from None


def feed_facts(
    header: FeedHeader, *, last_modified: datetime | None, fetched_at: datetime, now: datetime
) -> FeedFacts:
    """The snapshot time: the envelope's `timestamp`; for formats without one, the response's
    `Last-Modified`, else when the fetch began. More than 5 minutes ahead fails the run."""
    total = header.total_assets
    if header.enveloped:
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise FeedInvalid(ReasonCode.PARSE_ERROR, "`total_assets` must be an integer ≥ 0")
        moment = _timestamp(header.timestamp)
    else:
        total = None
        moment = last_modified or fetched_at
    if too_far_ahead(moment, now):
        minutes = int(MAX_FUTURE_SKEW.total_seconds() // 60)
        raise FeedInvalid(
            ReasonCode.FUTURE_TIMESTAMP,
            f"the feed's timestamp {timestamp_text(moment)} is more than {minutes} minutes "
            "in the future",
        )
    return FeedFacts(moment, total)
