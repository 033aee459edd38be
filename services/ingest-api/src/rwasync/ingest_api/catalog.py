"""The portal's reads for reader tokens: the catalogue across providers
(`GET /v1/catalog/assets`) and its change feed (`GET /v1/catalog/changes`).

Both are `rwasync.store.catalog`'s (the reconciler's relay reads the same change feed); here they
are authenticated with reader tokens only (a provider credential is a 401, as a reader token is
on the provider's calls) and their errors mapped: a parameter that cannot be used is a 400 naming
it, a `provider_id` of no enabled provider a 404 (as pricing's reads), a change-feed cursor older
than what is kept a 410.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Final

from aiohttp import web
from pydantic import Field

from rwasync.ingest_api.bodies import query_limit, query_since
from rwasync.ingest_api.models import CatalogPage, ChangePage
from rwasync.platform.auth import Authenticator
from rwasync.platform.db import Database
from rwasync.platform.http import Problem, bad_query, json_response, optional_query
from rwasync.platform.openapi import Operation, Param, Reply
from rwasync.schema.asset import ASSET_STATUSES
from rwasync.schema.fields import PROVIDER_ID, ProviderId, RFC3339Timestamp
from rwasync.store import catalog
from rwasync.store.catalog import CatalogRequestInvalid, CursorExpired, UnknownProvider

READER_AUTH: Final = ("reader",)
READ_TIMEOUT: Final = 5.0
LIMIT: Final = Param(
    "limit",
    "query",
    Annotated[int, Field(ge=1, le=catalog.MAX_LIMIT)],
    f"page size (default {catalog.DEFAULT_LIMIT})",
)


def _bad_parameter(exc: CatalogRequestInvalid) -> Problem:
    return bad_query(exc.parameter, exc.message)


class CatalogReads:
    def __init__(self, db: Database, readers: Authenticator[str]) -> None:
        self._db = db
        self._readers = readers

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "GET",
                "/v1/catalog/assets",
                self.list_assets,
                "listCatalogAssets",
                "Every enabled provider's live assets, by (provider_id, id), page by page",
                replies=(Reply(200, "a page", CatalogPage),),
                problems=(400, 404, 503),
                params=(
                    Param("provider_id", "query", ProviderId, "only this provider's assets"),
                    Param("status", "query", {"enum": list(ASSET_STATUSES)}, "only this status"),
                    Param(
                        "updated_since",
                        "query",
                        RFC3339Timestamp,
                        "only assets whose version time is at or after this",
                    ),
                    Param("cursor", "query", str, "the `next_cursor` of the previous page"),
                    LIMIT,
                ),
                tag="catalogue",
                security=READER_AUTH,
            ),
            Operation(
                "GET",
                "/v1/catalog/changes",
                self.list_changes,
                "listCatalogChanges",
                "The change feed: one entry per applied change, in commit order, resumable",
                replies=(Reply(200, "the entries after `since`", ChangePage),),
                problems=(400, 410, 503),
                params=(
                    Param(
                        "since",
                        "query",
                        str,
                        "the `next_cursor` of the previous answer (none: the oldest entry kept)",
                    ),
                    LIMIT,
                ),
                tag="catalogue",
                security=READER_AUTH,
            ),
        ]

    async def list_assets(self, request: web.Request) -> web.Response:
        await self._readers.authenticate_request(request)
        status = optional_query(request.query, "status")
        if status is not None and status not in ASSET_STATUSES:
            raise bad_query("status", f"must be one of {', '.join(ASSET_STATUSES)}")
        limit = query_limit(request, catalog.DEFAULT_LIMIT, catalog.MAX_LIMIT)
        provider_id = optional_query(request.query, "provider_id")
        if provider_id is not None and not PROVIDER_ID.fullmatch(provider_id):
            raise bad_query("provider_id", "not a provider id")
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                page = await catalog.list_catalog(
                    self._db.pool,
                    provider_id=provider_id,
                    status=status,
                    updated_since=query_since(request),
                    cursor=optional_query(request.query, "cursor"),
                    limit=limit,
                )
        except CatalogRequestInvalid as exc:
            raise _bad_parameter(exc) from None
        except UnknownProvider as exc:
            raise Problem(404, "Not Found", str(exc), kind="not-found") from None
        return json_response(page)

    async def list_changes(self, request: web.Request) -> web.Response:
        await self._readers.authenticate_request(request)
        limit = query_limit(request, catalog.DEFAULT_LIMIT, catalog.MAX_LIMIT)
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                page = await catalog.read_changes(
                    self._db.pool, optional_query(request.query, "since"), limit
                )
        except CatalogRequestInvalid as exc:
            raise _bad_parameter(exc) from None
        except CursorExpired as exc:
            raise Problem(410, "Gone", str(exc), kind="cursor-expired") from None
        return json_response(page)
