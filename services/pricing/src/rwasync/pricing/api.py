"""The investor price API: price reads for reader tokens, with cache headers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from rwasync.platform.auth import Authenticator
from rwasync.platform.db import Database
from rwasync.platform.http import Problem
from rwasync.pricing import queries
from rwasync.schema.asset import normalize_decimal
from rwasync.schema.timestamps import timestamp_text


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
    def __init__(self, db: Database, auth: Authenticator[str]) -> None:
        self._db = db
        self._auth = auth

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v1/prices/{provider_id}/{asset_id}", self.latest_price)

    async def latest_price(self, request: web.Request) -> web.Response:
        await self._auth.authenticate_request(request)
        provider_id = request.match_info["provider_id"]
        asset_id = request.match_info["asset_id"]
        row = await self._db.fetchrow(queries.LATEST_PRICE, provider_id, asset_id)
        if row is None:
            raise Problem(
                404, "Not Found", f"no accepted price for asset {asset_id!r} of {provider_id!r}"
            )
        return cached_json(request, price_object(row, datetime.now(UTC)))
