"""Writes of one asset: `PUT /v1/assets/{id}`, `POST /v1/assets`, `PATCH /v1/assets/{id}` (JSON
Merge Patch) and `DELETE /v1/assets/{id}`. Each validates first, then publishes one event with
the broker's confirm and answers 202 (docs/api.md, "Endpoints")."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from rwasync.ingest_api.acceptance import asset_upserted
from rwasync.ingest_api.bodies import JSON, MERGE_PATCH, invalid_document
from rwasync.ingest_api.callers import Call
from rwasync.ingest_api.context import (
    ASSET_ID_PARAM,
    IDEMPOTENCY_KEY,
    PROVIDER_AUTH,
    TENANT,
    WRITE_PROBLEMS,
    Ingest,
    accepted,
)
from rwasync.ingest_api.documents import body_asset, deletion, path_id_errors
from rwasync.ingest_api.models import Accepted, AssetAtPath, Deletion
from rwasync.platform.openapi import Body, Operation, Reply
from rwasync.schema import events, messages
from rwasync.schema.asset import Asset
from rwasync.schema.errors import AssetInvalid
from rwasync.schema.patch import AssetPatch, normalized_patch, parse_patch
from rwasync.schema.valid_asset import ValidAsset

ACCEPTED = Reply(202, "accepted: durably in the broker", Accepted, headers=("Location",))


class AssetWrites:
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    def operations(self) -> list[Operation]:
        common: dict[str, Any] = {
            "replies": (ACCEPTED,),
            "problems": WRITE_PROBLEMS,
            "tag": "assets",
            "security": PROVIDER_AUTH,
        }
        return [
            Operation(
                "PUT",
                "/v1/assets/{id}",
                self.put_asset,
                "putAsset",
                "Create or replace one asset",
                params=(ASSET_ID_PARAM, IDEMPOTENCY_KEY, TENANT),
                body=Body(AssetAtPath),
                **common,
            ),
            Operation(
                "POST",
                "/v1/assets",
                self.post_asset,
                "postAsset",
                "Create or replace one asset (its id from the body)",
                params=(IDEMPOTENCY_KEY, TENANT),
                body=Body(Asset),
                **common,
            ),
            Operation(
                "PATCH",
                "/v1/assets/{id}",
                self.patch_asset,
                "patchAsset",
                "Change part of an asset (JSON Merge Patch carrying updated_at)",
                params=(ASSET_ID_PARAM, IDEMPOTENCY_KEY, TENANT),
                body=Body(AssetPatch, media_types=(MERGE_PATCH, JSON)),
                **common,
            ),
            Operation(
                "DELETE",
                "/v1/assets/{id}",
                self.delete_asset,
                "deleteAsset",
                "Delete an asset (a tombstone, also for an id never seen)",
                params=(ASSET_ID_PARAM, IDEMPOTENCY_KEY, TENANT),
                body=Body(Deletion, required=False),
                **common,
            ),
        ]

    async def put_asset(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._put)

    async def _put(self, call: Call) -> web.Response:
        path_id = call.request.match_info["id"]
        try:
            asset = body_asset(call.body, call.json, call.arrival.received_at, path_id)
        except AssetInvalid as exc:
            raise invalid_document("asset document", exc.errors) from None
        return await self._upsert(call, asset)

    async def post_asset(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._post)

    async def _post(self, call: Call) -> web.Response:
        try:
            asset = body_asset(call.body, call.json, call.arrival.received_at)
        except AssetInvalid as exc:
            raise invalid_document("asset document", exc.errors) from None
        return await self._upsert(call, asset)

    async def _upsert(self, call: Call, asset: ValidAsset) -> web.Response:
        structlog.contextvars.bind_contextvars(asset_id=asset.id)
        event = asset_upserted(asset, call.arrival, self._ingest.clock.next())
        await self._ingest.publisher.accept_one(event)
        return accepted(event)

    async def patch_asset(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._patch, media_types=(MERGE_PATCH, JSON))

    async def _patch(self, call: Call) -> web.Response:
        path_id = call.request.match_info["id"]
        errors = path_id_errors(path_id)
        try:
            patch = parse_patch(call.json(), path_id=path_id, now=call.arrival.received_at)
        except AssetInvalid as exc:
            raise invalid_document("asset patch", errors + exc.errors) from None
        if errors:
            raise invalid_document("asset patch", errors)
        structlog.contextvars.bind_contextvars(asset_id=path_id)
        return await self._accept(
            events.asset_patched(
                call.arrival,
                asset_id=path_id,
                updated_at=patch.updated_at,
                accepted_at=self._ingest.clock.next(),
                patch=normalized_patch(patch),
            )
        )

    async def delete_asset(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._delete, body_optional=True)

    async def _delete(self, call: Call) -> web.Response:
        path_id = call.request.match_info["id"]
        try:
            request = deletion(call.optional_json(), path_id, call.arrival.received_at)
        except AssetInvalid as exc:
            raise invalid_document("deletion", exc.errors) from None
        structlog.contextvars.bind_contextvars(asset_id=path_id)
        return await self._accept(
            events.asset_deleted(
                call.arrival,
                asset_id=path_id,
                updated_at=request.deleted_at,
                accepted_at=self._ingest.clock.next(),
                reason=request.reason,
            )
        )

    async def _accept(self, event: events.AssetPatched | events.AssetDeleted) -> web.Response:
        """Publish a patch or deletion (validated as its model) in its wire form; 202."""
        wire = messages.wire_event(event)
        await self._ingest.publisher.accept_one(wire)
        return accepted(wire)
