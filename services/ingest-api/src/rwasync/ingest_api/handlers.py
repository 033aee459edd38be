"""The provider API over HTTP: authenticate, read and validate the body, accept the change (a
confirmed publish, then the receipt), answer 202; and the provider's reads of its own assets and
receipts. Every error leaves as a Problem, which the platform middleware renders as RFC 9457.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from typing import Any, Final

import structlog
from aiohttp import hdrs, web
from asyncpg import Record

from rwasync.ingest_api import queries
from rwasync.ingest_api.acceptance import (
    AcceptanceClock,
    AcceptedEvent,
    EventPublisher,
    asset_upserted,
    price_updated,
)
from rwasync.platform.auth import Authenticator
from rwasync.platform.db import Database
from rwasync.platform.http import TRACE_ID, Problem, json_response
from rwasync.schema import jsonsafe
from rwasync.schema.asset import Asset, asset_json_schema, parse_asset
from rwasync.schema.errors import AssetInvalid, FieldError
from rwasync.schema.events import Arrival, EventSource, EventType
from rwasync.schema.price import parse_price
from rwasync.schema.timestamps import timestamp_text, utc_now
from rwasync.store import receipts
from rwasync.store.tenants import ProviderIdentity

log = structlog.get_logger(__name__)

# The asset id rule of the document (docs/api.md): checked on the path too, before any look-up.
ASSET_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ASSET_ID_RULE: Final = "must be 1-128 characters of letters, digits, '.', '_', ':' and '-'"
# A read that takes longer than this answers 503 rather than holding the caller.
READ_TIMEOUT: Final = 5.0
# The trace id travels in every event, whose envelope caps it.
MAX_TRACE_ID: Final = 128
JSON_CHARSETS: Final = frozenset({"utf-8", "utf8"})


# --- problems -----------------------------------------------------------------------------------


def not_found(detail: str) -> Problem:
    return Problem(404, "Not Found", detail, kind="not-found")


def invalid_document(what: str, errors: list[FieldError]) -> Problem:
    count = f"{len(errors)} error" + ("" if len(errors) == 1 else "s")
    return Problem(
        422,
        "Unprocessable Content",
        f"the {what} is invalid ({count}); see errors",
        kind=f"invalid-{what.replace(' ', '-')}",
        errors=[error.as_dict() for error in errors],
    )


# --- request bodies -----------------------------------------------------------------------------


def require_json(request: web.Request) -> None:
    """415 unless the body is declared as `application/json` (UTF-8, the only JSON encoding)."""
    if request.content_type != "application/json":
        raise Problem(
            415,
            "Unsupported Media Type",
            "send the body as Content-Type: application/json",
            kind="unsupported-media-type",
        )
    charset = request.charset
    if charset is not None and charset.lower() not in JSON_CHARSETS:
        raise Problem(
            415,
            "Unsupported Media Type",
            f"JSON must be UTF-8, not {charset[:40]}",
            kind="unsupported-media-type",
        )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or a 413 as soon as it is known to exceed `limit` bytes (declared or not)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Content Too Large",
        f"the body is larger than {limit} bytes",
        kind="content-too-large",
    )


async def json_body(request: web.Request, limit: int) -> Any:
    require_json(request)
    body = await read_body(request, limit)
    try:
        return jsonsafe.loads(body)
    except jsonsafe.MalformedJSON as exc:
        raise Problem(400, "Bad Request", exc.detail, kind="malformed-json") from None


# --- validation against the path ----------------------------------------------------------------


def path_id_errors(path_id: str) -> list[FieldError]:
    if ASSET_ID.fullmatch(path_id):
        return []
    return [FieldError("/id", f"the asset id in the URL {ASSET_ID_RULE}")]


def asset_at_path(body: Any, path_id: str, now: datetime) -> Asset:
    """The asset a `PUT /v1/assets/{id}` describes: the body's `id`, when given, must be the
    path's; when absent, it is the path's. Raises AssetInvalid listing every problem."""
    errors = path_id_errors(path_id)
    if isinstance(body, dict):
        if "id" not in body:
            body = {**body, "id": path_id}
        elif body["id"] != path_id and not errors:
            errors.append(FieldError("/id", f"must equal the asset id in the URL ({path_id})"))
    try:
        asset = parse_asset(body, now=now)
    except AssetInvalid as exc:
        # One complaint about /id is enough: the path's (or the mismatch) says what to fix.
        id_reported = bool(errors)
        errors += [e for e in exc.errors if not (id_reported and e.pointer == "/id")]
    if errors:
        raise AssetInvalid(errors)
    return asset


# --- the API ------------------------------------------------------------------------------------


class ProviderApi:
    """Handlers of the provider API; every one is scoped to the provider of the credentials."""

    def __init__(
        self,
        *,
        db: Database,
        authenticator: Authenticator[ProviderIdentity],
        publisher: EventPublisher,
        clock: AcceptanceClock,
        max_body_bytes: int,
    ) -> None:
        self._db = db
        self._authenticator = authenticator
        self._publisher = publisher
        self._clock = clock
        self._max_body_bytes = max_body_bytes
        self._schema_body = jsonsafe.dumps(asset_json_schema())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/schema/asset.json", self.asset_schema),
            web.put("/v1/assets/{id}", self.put_asset),
            web.get("/v1/assets/{id}", self.get_asset),
            web.put("/v1/assets/{id}/price", self.put_price),
            web.get("/v1/events/{event_id}", self.get_event),
        ]

    # --- public ---

    async def asset_schema(self, _: web.Request) -> web.Response:
        return web.Response(body=self._schema_body, content_type="application/json")

    # --- writes ---

    async def put_asset(self, request: web.Request) -> web.Response:
        arrival = await self._arrival(request)
        path_id = request.match_info["id"]
        body = await json_body(request, self._max_body_bytes)
        try:
            asset = asset_at_path(body, path_id, arrival.received_at)
        except AssetInvalid as exc:
            raise invalid_document("asset document", exc.errors) from None
        structlog.contextvars.bind_contextvars(asset_id=asset.id)
        event = asset_upserted(asset, arrival, self._clock.next())
        return await self._accept(event)

    async def put_price(self, request: web.Request) -> web.Response:
        arrival = await self._arrival(request)
        asset_id = request.match_info["id"]
        body = await json_body(request, self._max_body_bytes)
        errors = path_id_errors(asset_id)
        try:
            price = parse_price(body, now=arrival.received_at)
        except AssetInvalid as exc:
            raise invalid_document("price", errors + exc.errors) from None
        if errors:
            raise invalid_document("price", errors)
        structlog.contextvars.bind_contextvars(asset_id=asset_id)
        event = price_updated(asset_id, price, arrival, self._clock.next())
        return await self._accept(event)

    async def _accept(self, event: AcceptedEvent) -> web.Response:
        structlog.contextvars.bind_contextvars(event_id=str(event.event_id))
        await self._publisher.accept([event])
        return json_response(
            {"event_id": str(event.event_id), "status": "accepted"},
            status=202,
            headers={hdrs.LOCATION: f"/v1/events/{event.event_id}"},
        )

    # --- reads ---

    async def get_asset(self, request: web.Request) -> web.Response:
        identity = await self._identify(request)
        asset_id = request.match_info["id"]
        include_deleted = _query_flag(request, "include_deleted")
        if path_id_errors(asset_id):
            raise not_found("no such asset")
        structlog.contextvars.bind_contextvars(asset_id=asset_id)
        row = await self._read(queries.ASSET_STATE, identity.provider_id, asset_id)
        if row is None or (row["deleted"] and not include_deleted):
            raise not_found("no such asset")
        stored = row["document"]
        document: dict[str, Any] = dict(stored) if stored is not None else {"id": asset_id}
        content_hash = row["content_hash"]
        document["_meta"] = {
            "updated_at": timestamp_text(row["updated_at"]),
            "content_hash": content_hash.hex() if content_hash is not None else None,
            "deleted": row["deleted"],
            "applied_at": timestamp_text(row["applied_at"]),
        }
        return json_response(document)

    async def get_event(self, request: web.Request) -> web.Response:
        identity = await self._identify(request)
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
        return json_response(receipt)

    # --- plumbing ---

    async def _identify(self, request: web.Request) -> ProviderIdentity:
        identity = await self._authenticator.authenticate(request.headers.get(hdrs.AUTHORIZATION))
        structlog.contextvars.bind_contextvars(provider_id=identity.provider_id)
        return identity

    async def _arrival(self, request: web.Request) -> Arrival:
        received_at = utc_now()
        identity = await self._identify(request)
        trace_id = request.get(TRACE_ID, "")[:MAX_TRACE_ID]
        return Arrival(
            provider_id=identity.provider_id,
            source=EventSource.PUSH,
            received_at=received_at,
            trace_id=trace_id,
        )

    async def _read(self, query: str, *args: Any) -> Record | None:
        # A database that is away or slow is a 503 (the platform middleware maps it).
        async with asyncio.timeout(READ_TIMEOUT):
            return await self._db.fetchrow(query, *args)


def _query_flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise Problem(400, "Bad Request", f"{name} must be true or false", kind="bad-query")
