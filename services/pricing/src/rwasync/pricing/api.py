"""The investor price API: reads for reader tokens, each with a strong ETag over the body,
`Cache-Control` and 304 on `If-None-Match` — the latest price of one asset or of many, history
pages and OHLC candles. Each read is declared as an `Operation` (its parameters' types from
`params`, its answers' from the models below), which is what `/v1/openapi.json` describes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final

import asyncpg
import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from rwasync.platform.auth import Authenticator
from rwasync.platform.db import Database
from rwasync.platform.http import Problem, bad_query
from rwasync.platform.openapi import Operation, Param, Reply
from rwasync.pricing import params, queries
from rwasync.schema.asset import normalize_decimal
from rwasync.schema.fields import ProviderId
from rwasync.schema.timestamps import timestamp_text

CACHE_CONTROL: Final = "private, max-age=5"
HISTORY_PAGE: Final = 500
HISTORY_PAGE_MAX: Final = 1000

# Security scheme names of the investor API (see `investor_api` in app.py).
READER_AUTH: Final = ("reader",)
READ_PROBLEMS: Final = (400, 404, 503)
CACHE_HEADERS: Final = ("ETag", "Cache-Control")

DecimalText = Annotated[
    str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", description="a normalised decimal")
]
TimestampText = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class LatestPrice(BaseModel):
    """The latest visible price of one asset; `stale` is computed at each read."""

    provider_id: str
    asset_id: str
    amount: DecimalText
    currency: str = Field(pattern="^[A-Z]{3}$")
    as_of: TimestampText
    received_at: TimestampText
    stale: bool


class LatestPrices(BaseModel):
    items: list[LatestPrice]
    missing: list[str]


class PriceTick(BaseModel):
    amount: DecimalText
    currency: str = Field(pattern="^[A-Z]{3}$")
    as_of: TimestampText
    received_at: TimestampText


class PriceHistory(BaseModel):
    items: list[PriceTick]
    next_cursor: str | None


class Candle(BaseModel):
    start: TimestampText
    currency: str = Field(pattern="^[A-Z]{3}$")
    open: DecimalText
    high: DecimalText
    low: DecimalText
    close: DecimalText
    count: int = Field(ge=1)


class Candles(BaseModel):
    items: list[Candle]


PROVIDER_PATH: Final = Param("provider_id", "path", ProviderId, "the provider (prv_...)")
ASSET_PATH: Final = Param("asset_id", "path", params.AssetId, "the asset id")
IF_NONE_MATCH: Final = Param(
    "If-None-Match", "header", str, "an ETag received before: 304 while the body is the same"
)
RANGE: Final = (
    Param("from", "query", params.Timestamp, "RFC 3339, inclusive (default: 30 days before to)"),
    Param(
        "to",
        "query",
        params.Timestamp,
        "RFC 3339, exclusive (default: 5 minutes from now, the furthest ahead a tick may be)",
    ),
)


def cached_replies(description: str, model: type[BaseModel]) -> tuple[Reply, ...]:
    return (
        Reply(200, description, model, headers=CACHE_HEADERS),
        Reply(304, "the body would be the one tagged in If-None-Match", headers=CACHE_HEADERS),
    )


def price_object(
    provider_id: str,
    asset_id: str,
    amount: Decimal,
    currency: str,
    as_of: datetime,
    accepted_at: datetime,
    freshness: timedelta,
    now: datetime,
) -> dict[str, Any]:
    """The price object of docs/api.md, `stale` computed now."""
    return {
        "provider_id": provider_id,
        "asset_id": asset_id,
        "amount": normalize_decimal(amount),
        "currency": currency.strip(),
        "as_of": timestamp_text(as_of),
        "received_at": timestamp_text(accepted_at),
        "stale": now - as_of > freshness,
    }


def row_price(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    return price_object(
        row["provider_id"],
        row["asset_id"],
        row["amount"],
        row["currency"],
        row["as_of"],
        row["accepted_at"],
        row["price_freshness"],
        now,
    )


def cached_json(request: web.Request, document: Any) -> web.Response:
    """A JSON answer with a strong ETag over the whole body; If-None-Match gives 304.

    If-None-Match compares weakly (RFC 9110, 13.1.2): `W/"x"` matches `"x"`, as a cache or
    proxy that compressed the body presents the tag it weakened."""
    body = orjson.dumps(document)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    # Several field lines are one list (RFC 9110 5.3): the second line's tag was ignored.
    listed = ",".join(request.headers.getall("If-None-Match", ())).split(",")
    presented = {tag.strip().removeprefix("W/") for tag in listed}
    if etag in presented or "*" in presented:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def not_found(detail: str) -> Problem:
    return Problem(404, "Not Found", detail, kind="not-found")


class PriceRoutes:
    def __init__(self, db: Database, auth: Authenticator[str]) -> None:
        self._db = db
        self._auth = auth

    def operations(self) -> list[Operation]:
        one = "/v1/prices/{provider_id}/{asset_id}"
        return [
            Operation(
                "GET",
                "/v1/prices",
                self.latest_prices,
                "getLatestPrices",
                "The latest prices of up to 500 assets of one provider, in request order",
                replies=cached_replies("the prices found, and the ids without one", LatestPrices),
                problems=READ_PROBLEMS,
                params=(
                    Param("provider_id", "query", ProviderId, "the provider", True),
                    Param(
                        "asset_id",
                        "query",
                        params.AssetIdList,
                        "comma-separated ids (1-500); repeated, every value counts",
                        True,
                        repeated=True,
                    ),
                    IF_NONE_MATCH,
                ),
                tag="prices",
                security=READER_AUTH,
            ),
            Operation(
                "GET",
                one,
                self.latest_price,
                "getLatestPrice",
                "The latest price of one asset",
                replies=cached_replies("the price", LatestPrice),
                problems=READ_PROBLEMS,
                params=(PROVIDER_PATH, ASSET_PATH, IF_NONE_MATCH),
                tag="prices",
                security=READER_AUTH,
            ),
            Operation(
                "GET",
                one + "/history",
                self.history,
                "getPriceHistory",
                "The visible ticks of one asset in ascending as_of, page by page",
                replies=cached_replies("a page of ticks", PriceHistory),
                problems=READ_PROBLEMS,
                params=(
                    PROVIDER_PATH,
                    ASSET_PATH,
                    *RANGE,
                    Param("cursor", "query", str, "the next_cursor of the previous page"),
                    Param(
                        "limit",
                        "query",
                        params.limit_type(HISTORY_PAGE_MAX),
                        f"page size (default {HISTORY_PAGE})",
                    ),
                    IF_NONE_MATCH,
                ),
                tag="prices",
                security=READER_AUTH,
            ),
            Operation(
                "GET",
                one + "/ohlc",
                self.ohlc,
                "getPriceCandles",
                "OHLC candles of one asset, aligned on UTC hours or days",
                replies=cached_replies("the candles", Candles),
                problems=READ_PROBLEMS,
                params=(
                    PROVIDER_PATH,
                    ASSET_PATH,
                    Param("interval", "query", params.Interval, "the candle width", True),
                    *RANGE,
                    IF_NONE_MATCH,
                ),
                tag="prices",
                security=READER_AUTH,
            ),
        ]

    async def _reader(self, request: web.Request) -> None:
        await self._auth.authenticate_request(request)

    async def latest_price(self, request: web.Request) -> web.Response:
        await self._reader(request)
        row = await self._latest_row(request)
        return cached_json(request, row_price(row, datetime.now(UTC)))

    async def _latest_row(self, request: web.Request) -> asyncpg.Record:
        """The asset's latest visible price; a 404 saying whether the provider or the price is
        unknown (the same words as /v1/prices and the stream)."""
        provider_id = request.match_info["provider_id"]
        asset_id = request.match_info["asset_id"]
        row = None
        if params.known_form(provider_id):
            # One query tells an unknown provider from an unpriced asset (a row without an
            # asset). An asset id that cannot be one is not looked up (NULL matches no price).
            looked_up = asset_id if params.known_form(provider_id, asset_id) else None
            row = await self._db.fetchrow(queries.LATEST_PRICE, provider_id, looked_up)
        if row is None:
            raise not_found(f"unknown provider {provider_id!r}")
        if row["asset_id"] is None:
            raise not_found(f"no accepted price for asset {asset_id!r} of {provider_id!r}")
        return row

    async def latest_prices(self, request: web.Request) -> web.Response:
        await self._reader(request)
        provider_id = params.required(request.query, "provider_id")
        asset_ids = params.asset_ids(request.query) or []
        rows = []
        if params.known_form(provider_id):
            rows = await self._db.fetch(queries.LATEST_PRICES, provider_id, asset_ids)
        if not rows:
            raise not_found(f"unknown provider {provider_id!r}")
        now = datetime.now(UTC)
        found = {r["asset_id"]: row_price(r, now) for r in rows if r["asset_id"] is not None}
        return cached_json(
            request,
            {
                "items": [found[a] for a in asset_ids if a in found],
                "missing": [a for a in asset_ids if a not in found],
            },
        )

    async def _priced_asset(self, request: web.Request) -> tuple[str, str]:
        row = await self._latest_row(request)
        return row["provider_id"], row["asset_id"]

    async def history(self, request: web.Request) -> web.Response:
        await self._reader(request)
        start, end = params.time_range(request.query, datetime.now(UTC))
        after = params.history_cursor(request.query)
        page = params.limit(request.query, default=HISTORY_PAGE, maximum=HISTORY_PAGE_MAX)
        provider_id, asset_id = await self._priced_asset(request)
        rows = await self._db.fetch(
            queries.HISTORY, provider_id, asset_id, start, end, after, page + 1
        )
        items = [
            {
                "amount": normalize_decimal(r["amount"]),
                "currency": r["currency"].strip(),
                "as_of": timestamp_text(r["as_of"]),
                "received_at": timestamp_text(r["accepted_at"]),
            }
            for r in rows[:page]
        ]
        more = len(rows) > page
        cursor = params.next_history_cursor(rows[page - 1]["as_of"]) if more else None
        return cached_json(request, {"items": items, "next_cursor": cursor})

    async def ohlc(self, request: web.Request) -> web.Response:
        await self._reader(request)
        bucket = params.interval(request.query)
        start, end = params.time_range(request.query, datetime.now(UTC))
        if params.candle_count(start, end, bucket) > params.MAX_CANDLES:
            raise bad_query(
                "from", f"the range holds more than {params.MAX_CANDLES} candles of this interval"
            )
        provider_id, asset_id = await self._priced_asset(request)
        rows = await self._db.fetch(queries.OHLC, provider_id, asset_id, start, end, bucket)
        return cached_json(
            request,
            {
                "items": [
                    {
                        "start": timestamp_text(r["start"]),
                        "currency": r["currency"].strip(),
                        "open": normalize_decimal(r["open"]),
                        "high": normalize_decimal(r["high"]),
                        "low": normalize_decimal(r["low"]),
                        "close": normalize_decimal(r["close"]),
                        "count": r["count"],
                    }
                    for r in rows
                ]
            },
        )
