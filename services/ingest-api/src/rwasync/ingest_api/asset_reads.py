"""The provider's reads, always scoped to its own data: one asset as applied, its assets page by
page, a receipt; and the public JSON Schema of the asset document."""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from typing import Annotated, Any, Final

import structlog
from aiohttp import web
from asyncpg import Record
from pydantic import Field

from rwasync.ingest_api import queries
from rwasync.ingest_api.bodies import (
    not_found,
    query_flag,
    query_limit,
    query_since,
)
from rwasync.ingest_api.context import (
    ASSET_ID_PARAM,
    PROVIDER_AUTH,
    READ_PROBLEMS,
    TENANT,
    Ingest,
)
from rwasync.ingest_api.documents import path_id_errors
from rwasync.ingest_api.models import AssetPage, Receipt, StoredAsset
from rwasync.platform.http import bad_query, json_response, optional_query
from rwasync.platform.openapi import Operation, Param, Reply
from rwasync.schema import jsonsafe
from rwasync.schema.asset import ASSET_ID, ASSET_STATUSES, asset_json_schema
from rwasync.schema.events import EventType
from rwasync.schema.fields import RFC3339Timestamp
from rwasync.schema.timestamps import timestamp_text
from rwasync.store import catalog, receipts

# A read that takes longer than this answers 503 rather than holding the caller.
READ_TIMEOUT: Final = 5.0
MAX_PAGE: Final = 500
DEFAULT_PAGE: Final = 100
CURSOR_PREFIX: Final = "a1:"

INCLUDE_DELETED: Final = Param("include_deleted", "query", bool, "also deleted assets")
LIST_PARAMS: Final = (
    Param("status", "query", {"enum": list(ASSET_STATUSES)}, "only assets in this status"),
    Param("updated_since", "query", RFC3339Timestamp, "only versions at or after this time"),
    INCLUDE_DELETED,
    Param("cursor", "query", str, "the `next_cursor` of the previous page"),
    Param("limit", "query", Annotated[int, Field(ge=1, le=MAX_PAGE)], "page size (default 100)"),
    TENANT,
)


def encode_cursor(asset_id: str) -> str:
    return base64.urlsafe_b64encode((CURSOR_PREFIX + asset_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_query("cursor", "is not one this API returned") from None
    # the id of the page's last asset: one no asset can have is no position of ours
    asset_id = text.removeprefix(CURSOR_PREFIX)
    if not text.startswith(CURSOR_PREFIX) or ASSET_ID.fullmatch(asset_id) is None:
        raise bad_query("cursor", "is not one this API returned")
    return asset_id


def stored_document(row: Record) -> dict[str, Any]:
    stored = row["document"]
    document: dict[str, Any] = dict(stored) if stored is not None else {"id": row["asset_id"]}
    content_hash = row["content_hash"]
    document["_meta"] = {
        "updated_at": timestamp_text(row["updated_at"]),
        "content_hash": content_hash.hex() if content_hash is not None else None,
        "deleted": row["deleted"],
        "applied_at": timestamp_text(row["applied_at"]),
    }
    return document


class AssetReads:
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest
        self._schema_body = jsonsafe.dumps(asset_json_schema())

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "GET",
                "/v1/schema/asset.json",
                self.asset_schema,
                "getAssetSchema",
                "The JSON Schema of the asset document (public)",
                replies=(Reply(200, "JSON Schema 2020-12", {"type": "object"}),),
                tag="schema",
            ),
            Operation(
                "GET",
                "/v1/assets/{id}",
                self.get_asset,
                "getAsset",
                "One asset as applied, with _meta",
                replies=(Reply(200, "the stored document", StoredAsset),),
                problems=READ_PROBLEMS,
                params=(ASSET_ID_PARAM, INCLUDE_DELETED, TENANT),
                tag="assets",
                security=PROVIDER_AUTH,
            ),
            Operation(
                "GET",
                "/v1/assets",
                self.list_assets,
                "listAssets",
                "The provider's assets in id order, page by page",
                replies=(Reply(200, "a page", AssetPage),),
                problems=(400, 503),
                params=LIST_PARAMS,
                tag="assets",
                security=PROVIDER_AUTH,
            ),
            Operation(
                "GET",
                "/v1/events/{event_id}",
                self.get_event,
                "getReceipt",
                "The receipt of an accepted event",
                replies=(Reply(200, "the receipt", Receipt),),
                problems=READ_PROBLEMS,
                params=(Param("event_id", "path", str, "the event id"), TENANT),
                tag="receipts",
                security=PROVIDER_AUTH,
            ),
        ]

    async def asset_schema(self, _: web.Request) -> web.Response:
        return web.Response(body=self._schema_body, content_type="application/json")

    async def get_asset(self, request: web.Request) -> web.Response:
        identity = await self._ingest.callers.identify(request)
        asset_id = request.match_info["id"]
        include_deleted = query_flag(request, "include_deleted")
        if path_id_errors(asset_id):
            raise not_found("no such asset")
        structlog.contextvars.bind_contextvars(asset_id=asset_id)
        row = await self._read(queries.ASSET_STATE, identity.provider_id, asset_id)
        if row is None or (row["deleted"] and not include_deleted):
            raise not_found("no such asset")
        return json_response(stored_document(row))

    async def list_assets(self, request: web.Request) -> web.Response:
        identity = await self._ingest.callers.identify(request)
        query = request.query
        status = query.get("status")
        if status is not None and status not in ASSET_STATUSES:
            raise bad_query("status", f"must be one of {', '.join(ASSET_STATUSES)}")
        limit = query_limit(request, DEFAULT_PAGE, MAX_PAGE)
        cursor = optional_query(query, "cursor")
        after = decode_cursor(cursor) if cursor is not None else ""
        rows = await self._fetch(
            queries.LIST_ASSETS,
            identity.provider_id,
            after,
            status,
            query_since(request),
            query_flag(request, "include_deleted"),
            limit + 1,
            catalog.PAGE_DOCUMENT_BYTES,
        )
        page, more = catalog.fitting_page(rows, limit)
        next_cursor = encode_cursor(page[-1]["asset_id"]) if more else None
        return json_response(
            {"items": [stored_document(row) for row in page], "next_cursor": next_cursor}
        )

    async def get_event(self, request: web.Request) -> web.Response:
        identity = await self._ingest.callers.identify(request)
        try:
            event_id = uuid.UUID(request.match_info["event_id"])
        except ValueError:
            raise not_found("no such event") from None
        structlog.contextvars.bind_contextvars(event_id=str(event_id))
        row = await self._read(receipts.GET_RECEIPT, event_id, identity.provider_id)
        if row is None:
            raise not_found("no such event")
        receipt: dict[str, Any] = {
            "event_id": str(row["event_id"]),
            "type": row["type"],
            "asset_id": row["asset_id"],
            "status": row["status"],
        }
        if row["reason"] is not None:
            receipt["reason"] = row["reason"]
        if row["type"] == EventType.PRICE_UPDATED and row["latest"] is not None:
            receipt["latest"] = row["latest"]
        if row["trace_id"] is not None:
            receipt["trace_id"] = row["trace_id"]
        return json_response(receipt)

    async def _read(self, query: str, *args: Any) -> Record | None:
        # A database that is away or slow is a 503 (the platform middleware maps it).
        async with asyncio.timeout(READ_TIMEOUT):
            return await self._ingest.db.fetchrow(query, *args)

    async def _fetch(self, query: str, *args: Any) -> list[Record]:
        async with asyncio.timeout(READ_TIMEOUT):
            return await self._ingest.db.fetch(query, *args)
