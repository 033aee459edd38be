"""The portal's reads of the catalogue: every provider's live assets, and the change feed.

Both are read by reader tokens on ingest-api (`GET /v1/catalog/assets`, `GET /v1/catalog/changes`)
and the change feed also by the reconciler's outbox relay, which publishes the same entries as
`asset.changed`. Cursors are opaque to callers (docs/api.md, "Portal catalogue read").

The change feed is ordered by (transaction id, entry id) and hands out only entries whose
transaction id lies below the reading snapshot's xmin: every transaction that could still commit
an entry before them has ended, so resuming from a cursor never skips an entry that committed
late, and never repeats one. For any one asset this order is its commit order (its writers
serialise on the asset's lock before they write anything).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from rwasync.platform.db import LockSpace, writers_horizon
from rwasync.schema.asset import ASSET_ID, ASSET_STATUSES
from rwasync.schema.fields import PROVIDER_ID
from rwasync.schema.timestamps import timestamp_text

MAX_LIMIT: Final = 500

# `change_cursor` of an entry of CHANGES_AFTER (`c`): base64url of "xid.change_id", unpadded (at
# most 40 bytes: one line of base64).
CHANGE_CURSOR: Final = """'c1.' || rtrim(translate(encode(convert_to(
    c.xid::text || '.' || c.change_id::text, 'UTF8'), 'base64'), '+/', '-_'), '=')"""

# `to_char` pattern of `timestamp_text`'s rendering (of a UTC timestamp without zone): FM leaves
# a year below 1000 unpadded, as strftime's %Y does.
TIMESTAMP_TEXT: Final = """'FMYYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""
DEFAULT_LIMIT: Final = 100


class CatalogRequestInvalid(Exception):
    """A filter, limit or cursor that cannot be used (HTTP 400), naming the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


class CursorExpired(Exception):
    """Entries after this change-feed cursor were removed by retention (HTTP 410 Gone)."""


class UnknownProvider(Exception):
    """A `provider_id` filter naming no enabled provider (HTTP 404, as pricing's reads answer)."""

    def __init__(self, provider_id: str) -> None:
        super().__init__(f"unknown provider {provider_id!r}")
        self.provider_id = provider_id


@dataclass(frozen=True, order=True, slots=True)
class ChangePosition:
    """Where an entry sits in the change feed: its transaction id, then its own id."""

    xid: int
    change_id: int

    @classmethod
    def of(cls, row: asyncpg.Record) -> ChangePosition:
        return cls(int(row["xid"]), int(row["change_id"]))


START: Final = ChangePosition(0, 0)


def _encode(prefix: str, text: str) -> str:
    return prefix + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(prefix: str, cursor: str, parameter: str) -> str:
    if not cursor.startswith(prefix):
        raise CatalogRequestInvalid(parameter, "not a cursor this API handed out")
    body = cursor[len(prefix) :]
    try:
        text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CatalogRequestInvalid(parameter, "not a cursor this API handed out") from None
    if "\x00" in text:  # Postgres text cannot hold it: not one of ours either
        raise CatalogRequestInvalid(parameter, "not a cursor this API handed out")
    return text


def change_cursor(position: ChangePosition) -> str:
    return _encode("c1.", f"{position.xid}.{position.change_id}")


def parse_change_cursor(cursor: str, parameter: str = "since") -> ChangePosition:
    xid, _, change_id = _decode("c1.", cursor, parameter).partition(".")
    # ASCII digits only (str.isdigit takes '٣' too), within the columns' types: xid8, bigint.
    if not (_DIGITS.fullmatch(xid) and _DIGITS.fullmatch(change_id)):
        raise CatalogRequestInvalid(parameter, "not a cursor this API handed out")
    position = ChangePosition(int(xid), int(change_id))
    if position.xid > _MAX_XID8 or position.change_id > _MAX_BIGINT:
        raise CatalogRequestInvalid(parameter, "not a cursor this API handed out")
    return position


_DIGITS: Final = re.compile(r"[0-9]{1,20}")
_MAX_XID8: Final = 2**64 - 1
_MAX_BIGINT: Final = 2**63 - 1


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise CatalogRequestInvalid("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


# --- the change feed -------------------------------------------------------------------------

# One snapshot: the retention horizon, and the settled entries after a position — those whose
# transaction id is below the writers' horizon ($4, read first: `writers_horizon`), so that an
# entry committed later can never sort before one already handed out. Cursor, ids and times come
# as the text the entries carry (`TIMESTAMP_TEXT` renders as `timestamp_text` does): Postgres
# renders them in a fraction of the time the relay spent decoding and formatting them per entry.
CHANGES_AFTER: Final = f"""
SELECT h.xid::text AS horizon_xid, h.change_id AS horizon_change_id,
       pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid,
       c.xid::text AS xid, c.change_id, {CHANGE_CURSOR} AS cursor,
       c.event_id::text AS event_id, c.provider_id, c.asset_id,
       to_char(c.updated_at AT TIME ZONE 'UTC', {TIMESTAMP_TEXT}) AS updated_at,
       c.deleted, encode(c.after_hash, 'hex') AS content_hash,
       to_char(c.applied_at AT TIME ZONE 'UTC', {TIMESTAMP_TEXT}) AS applied_at
-- (LIMIT 1: the horizon's one row, which the planner would otherwise guess at a thousand and more)
FROM (SELECT xid, change_id FROM asset_changes_horizon LIMIT 1) h
LEFT JOIN LATERAL (
    SELECT * FROM asset_changes
    WHERE (xid, change_id) > ($1::text::xid8, $2)
      AND xid < $4::text::xid8
    ORDER BY xid, change_id
    LIMIT $3
) c ON true
ORDER BY c.xid, c.change_id
"""


def change_item(row: asyncpg.Record) -> dict[str, Any]:
    """One change-feed entry as portals read it and as `asset.changed` carries it (a row of
    CHANGES_AFTER: cursor, ids and times already text)."""
    deleted = bool(row["deleted"])
    return {
        "cursor": row["cursor"],
        "event_id": row["event_id"],
        "type": "asset.deleted" if deleted else "asset.upserted",
        "provider_id": row["provider_id"],
        "asset_id": row["asset_id"],
        "updated_at": row["updated_at"],
        "deleted": deleted,
        "content_hash": row["content_hash"],
        "applied_at": row["applied_at"],
    }


@dataclass(frozen=True, slots=True)
class ChangePage:
    items: list[dict[str, Any]]
    # The position after the last item (the one asked for when there is none).
    position: ChangePosition
    horizon: ChangePosition
    # The first transaction id not yet assigned: no cursor handed out is at or beyond it.
    next_xid: int


async def changes_after(
    conn: asyncpg.Connection | asyncpg.Pool, position: ChangePosition, limit: int
) -> ChangePage:
    """The settled entries after `position`, oldest first (no retention check: the relay's)."""
    settled_below = await writers_horizon(conn, LockSpace.ASSETS)
    rows = await conn.fetch(
        CHANGES_AFTER, str(position.xid), position.change_id, limit, str(settled_below)
    )
    horizon = ChangePosition(int(rows[0]["horizon_xid"]), int(rows[0]["horizon_change_id"]))
    entries = [r for r in rows if r["xid"] is not None]
    last = ChangePosition.of(entries[-1]) if entries else position
    return ChangePage([change_item(r) for r in entries], last, horizon, int(rows[0]["next_xid"]))


async def read_changes(
    conn: asyncpg.Connection | asyncpg.Pool, since: str | None, limit: int = DEFAULT_LIMIT
) -> dict[str, Any]:
    """`GET /v1/catalog/changes`: `{"items", "next_cursor"}`; raises CursorExpired (410) or
    CatalogRequestInvalid (400)."""
    _check_limit(limit)
    position = parse_change_cursor(since) if since is not None else START
    page = await changes_after(conn, position, limit)
    if since is not None and position < page.horizon:
        raise CursorExpired(
            "entries after this cursor are no longer kept; read again from the start "
            "(without since) and reconcile with the catalogue"
        )
    if since is not None and not page.items and position.xid >= page.next_xid:
        # No transaction has that id yet, so no cursor was ever handed out there: a follower
        # holding it would wait for ever (a forged cursor, or one from another database).
        raise CatalogRequestInvalid(
            "since", "is ahead of the change feed: not a cursor this API handed out"
        )
    start = page.position if page.items or since is not None else max(position, page.horizon)
    return {"items": page.items, "next_cursor": change_cursor(start)}


# --- pages of documents ----------------------------------------------------------------------

# A page of documents holds at most about this many bytes of them, whatever its `limit`: a
# document may be near 1 MiB, and 500 of them held at once (rows, dicts, the encoded answer)
# grew a process by gigabytes, past any container's memory limit. A page of large documents
# ends early; its `next_cursor` goes on from there.
PAGE_DOCUMENT_BYTES: Final = 8 * 1024 * 1024


def within_page_budget(query: str, columns: str, order: str, budget: str) -> str:
    """`query` (its rows ordered by `order` and limited; with `document`) with a `fits` column:
    whether the documents before the row come to less than `budget` bytes (the first row always
    fits). A row that does not fit carries no document, only the keys its cursor needs."""
    return f"""
SELECT {columns}, fits, CASE WHEN fits THEN document END AS document
FROM (
    SELECT q.*,
           coalesce(sum(octet_length(q.document::text)) OVER (
               ORDER BY {order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
           < {budget} AS fits
    FROM ({query}) q
) w
ORDER BY {order}
"""


def fitting_page(rows: Sequence[asyncpg.Record], limit: int) -> tuple[list[asyncpg.Record], bool]:
    """The rows of a page (`within_page_budget`'s that fit, at most `limit`) and whether more
    follow (the query asked for `limit + 1`)."""
    page = [row for row in rows[: limit + 1] if row["fits"]][:limit]
    return page, len(rows) > len(page)


# --- the catalogue ---------------------------------------------------------------------------

LIST_CATALOG: Final = within_page_budget(
    """
SELECT s.provider_id, s.asset_id, s.document, s.updated_at,
       encode(s.content_hash, 'hex') AS content_hash, s.applied_at
FROM asset_state s
JOIN providers p ON p.provider_id = s.provider_id
WHERE NOT s.deleted AND NOT p.disabled
  AND ($1::text IS NULL OR s.provider_id = $1)
  AND ($2::text IS NULL OR s.status = $2)
  AND ($3::timestamptz IS NULL OR s.updated_at >= $3)
  AND ($4::text IS NULL OR (s.provider_id, s.asset_id) > ($4, $5::text))
ORDER BY s.provider_id, s.asset_id
LIMIT $6""",
    columns="provider_id, asset_id, updated_at, content_hash, applied_at",
    order="provider_id, asset_id",
    budget="$7",
)


# Whether a provider's assets are listed at all (it exists and is not disabled).
PROVIDER_LISTED: Final = """
SELECT EXISTS (SELECT 1 FROM providers WHERE provider_id = $1 AND NOT disabled)
"""


def catalog_item(row: asyncpg.Record) -> dict[str, Any]:
    return {
        **row["document"],
        "_meta": {
            "provider_id": row["provider_id"],
            "updated_at": timestamp_text(row["updated_at"]),
            "content_hash": row["content_hash"],
            "applied_at": timestamp_text(row["applied_at"]),
        },
    }


def _asset_cursor(provider_id: str, asset_id: str) -> str:
    # Neither id can contain a newline (provider ids are generated, asset ids are [A-Za-z0-9._:-]).
    return _encode("a1.", f"{provider_id}\n{asset_id}")


def _parse_asset_cursor(cursor: str) -> tuple[str, str]:
    provider_id, newline, asset_id = _decode("a1.", cursor, "cursor").partition("\n")
    # two ids no provider and no asset can have are no position of ours
    if not (newline and PROVIDER_ID.fullmatch(provider_id) and ASSET_ID.fullmatch(asset_id)):
        raise CatalogRequestInvalid("cursor", "not a cursor this API handed out")
    return provider_id, asset_id


async def list_catalog(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    provider_id: str | None = None,
    status: str | None = None,
    updated_since: datetime | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """`GET /v1/catalog/assets`: live assets of enabled providers ordered by (provider_id, id),
    `{"items", "next_cursor"}` (null after the last page); raises CatalogRequestInvalid (400),
    and UnknownProvider (404) for a `provider_id` of no enabled provider, which used to be an empty
    page, as if it had no assets (looked up only when the page is empty)."""
    _check_limit(limit)
    if status is not None and status not in ASSET_STATUSES:
        raise CatalogRequestInvalid("status", f"must be one of {', '.join(ASSET_STATUSES)}")
    if updated_since is not None and updated_since.tzinfo is None:
        raise CatalogRequestInvalid("updated_since", "must carry a UTC offset")
    after = _parse_asset_cursor(cursor) if cursor is not None else (None, None)
    rows = await conn.fetch(
        LIST_CATALOG,
        provider_id,
        status,
        updated_since,
        after[0],
        after[1],
        limit + 1,
        PAGE_DOCUMENT_BYTES,
    )
    page, more = fitting_page(rows, limit)
    if (
        not rows
        and provider_id is not None
        and not await conn.fetchval(PROVIDER_LISTED, provider_id)
    ):
        raise UnknownProvider(provider_id)
    return {
        "items": [catalog_item(r) for r in page],
        "next_cursor": _asset_cursor(page[-1]["provider_id"], page[-1]["asset_id"])
        if more
        else None,
    }
