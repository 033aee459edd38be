"""The staging rows the validation workers write as COPY text data read back from Postgres exactly
as the items they came from: every column, prices with and without `as_of`, numbers in every form
a Decimal prints, and invalid items (staged only with an id that could be a stored asset's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.feed_poller import queries
from rwasync.feed_poller.validation import copy_line
from rwasync.feeds.items import ItemError, ValidItem
from rwasync.platform.db import Database
from rwasync.schema.errors import FieldError
from rwasync.schema.valid_asset import QuotedPrice

RUN = "run_0123456789abcdef"
_ID_CHARS = "abcXYZ019._:-"
_moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
_prices = st.none() | st.builds(
    QuotedPrice,
    amount=st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: d > 0 and d.adjusted() < 30
    ),
    currency=st.sampled_from(["USD", "EUR", "CHF"]),
    as_of=st.none() | _moments,
)
_valid = st.builds(
    ValidItem,
    index=st.integers(0, 2**31 - 1),
    asset_id=st.text(_ID_CHARS, min_size=1, max_size=128),
    updated_at=_moments,
    content_hash=st.binary(min_size=32, max_size=32),
    # Any bytes, and printable ASCII (as canonical JSON mostly is) thick with backslashes, a
    # leading `\x` included: the two forms `copy_line` writes a document in.
    document=st.binary(min_size=0, max_size=300)
    | st.lists(st.sampled_from(["\\", "\\x", "x", '"', " ", "~", "{"]), max_size=40).map(
        lambda parts: "".join(parts).encode()
    ),
    fingerprint=st.binary(min_size=16, max_size=16),
    price=_prices,
)
_invalid = st.builds(
    ItemError,
    index=st.integers(0, 2**31 - 1),
    asset_id=st.none() | st.text(_ID_CHARS + "\n\t\\ é", max_size=130),
    errors=st.just((FieldError("/name", "is required"),)),
)


def _expected(item: ValidItem | ItemError) -> tuple[Any, ...]:
    if isinstance(item, ItemError):
        return (RUN, item.asset_id, item.index, False) + (None,) * 7
    price = item.price
    return (
        RUN, item.asset_id, item.index, True, item.fingerprint, item.updated_at,
        item.content_hash, item.document,
        price.amount if price else None, price.currency if price else None,
        price.as_of if price else None,
    )  # fmt: skip


async def _round_trip(db: Database, items: list[ValidItem | ItemError]) -> list[tuple[Any, ...]]:
    lines = [line for item in items if (line := copy_line(RUN, item)) is not None]
    async with db.connection() as conn, conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE staged (LIKE feed_run_items INCLUDING DEFAULTS, position serial)"
            " ON COMMIT DROP"
        )
        if lines:
            await conn.copy_to_table(
                "staged",
                source=memoryview("".join(lines).encode()),
                columns=queries.STAGED_COLUMNS,
                format="text",
            )
        columns = ", ".join(queries.STAGED_COLUMNS)
        rows = await conn.fetch(f"SELECT {columns} FROM staged ORDER BY position")
    return [tuple(row) for row in rows]


async def test_each_kind_of_row_reads_back_as_its_item(db: Database) -> None:
    at = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    items: list[ValidItem | ItemError] = [
        ValidItem(0, "a-1", at, b"\x00" * 32, b'{"id":"a-1","name":"\\\\ \\t"}', b"\xff" * 16,
                  None),
        ValidItem(0, "a-1", at, b"\x00" * 32, b"\\x41", b"\xff" * 16, None),
        ValidItem(0, "a-1", at, b"\x00" * 32, '{"name":"\u00e9"}'.encode(), b"\xff" * 16, None),
        ValidItem(1, "b:2", at, b"h" * 32, b"{}", b"f" * 16,
                  QuotedPrice(Decimal("1E+2"), "USD", None)),
        ValidItem(2, "c.3", at, b"h" * 32, b"{}", b"f" * 16,
                  QuotedPrice(Decimal("0.000000001"), "EUR", at - timedelta(days=400))),
        ItemError(3, "d_4", (FieldError("/name", "is required"),)),
        ItemError(4, None, (FieldError("", "not an object"),)),
        ItemError(5, "tab\tin", (FieldError("/id", "bad"),)),
        ItemError(6, "newline-at-end\n", (FieldError("/id", "bad"),)),
    ]  # fmt: skip
    assert await _round_trip(db, items) == [_expected(item) for item in items[:6]]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(_valid | _invalid, max_size=8))
async def test_generated_items_read_back_exactly(
    db: Database, items: list[ValidItem | ItemError]
) -> None:
    staged = [
        item
        for item in items
        if not isinstance(item, ItemError)
        or (item.asset_id and all(c in _ID_CHARS for c in item.asset_id)
            and len(item.asset_id) <= 128)
    ]  # fmt: skip
    assert await _round_trip(db, items) == [_expected(item) for item in staged]
