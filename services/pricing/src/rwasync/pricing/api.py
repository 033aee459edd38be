"""The investor price API: reader-token authentication and price reads with cache headers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from rwasync.platform.cache import TTLCache
from rwasync.platform.credentials import digest
from rwasync.platform.db import Database
from rwasync.platform.http import Problem, unauthorized
from rwasync.pricing import queries
from rwasync.schema.asset import normalize_decimal
from rwasync.schema.timestamps import timestamp_text

_BEARER = "bearer "


class ReaderAuth:
    """Bearer reader tokens only; provider credentials and anything else get 401."""

    def __init__(self, db: Database, cache_seconds: float) -> None:
        self._db = db
        self._cache: TTLCache[bytes, str] = TTLCache(cache_seconds)

    async def reader_id(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith(_BEARER):
            raise unauthorized(
                "a reader token is required (Authorization: Bearer ...)", scheme="Bearer"
            )
        token_digest = digest(header[len(_BEARER) :].strip())
        cached = self._cache.get(token_digest)
        if cached is not None:
            return cached
        reader = await self._db.fetchval(queries.READER_BY_TOKEN, token_digest)
        if reader is None:
            raise unauthorized("unknown or revoked reader token", scheme="Bearer")
        self._cache.put(token_digest, reader)
        return str(reader)


def price_object(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    return {
        "provider_id": row["provider_id"],
        "asset_id": row["asset_id"],
        "amount": normalize_decimal(row["amount"]),
        "currency": row["currency"],
        "as_of": timestamp_text(row["as_of"]),
        "received_at": timestamp_text(row["accepted_at"]),
        "stale": now - row["as_of"] > row["price_freshness"],
    }


def cached_json(request: web.Request, document: Any) -> web.Response:
    """A JSON answer with a strong ETag over the whole body; If-None-Match gives 304."""
    body = orjson.dumps(document)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=5"}
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


class PriceRoutes:
    def __init__(self, db: Database, auth: ReaderAuth) -> None:
        self._db = db
        self._auth = auth

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v1/prices/{provider_id}/{asset_id}", self.latest_price)

    async def latest_price(self, request: web.Request) -> web.Response:
        await self._auth.reader_id(request)
        provider_id = request.match_info["provider_id"]
        asset_id = request.match_info["asset_id"]
        row = await self._db.fetchrow(queries.LATEST_PRICE, provider_id, asset_id)
        if row is None:
            raise Problem(
                404, "Not Found", f"no accepted price for asset {asset_id!r} of {provider_id!r}"
            )
        return cached_json(request, price_object(row, datetime.now(UTC)))
