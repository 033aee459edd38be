"""`POST /v1/validate/asset` and `POST /v1/validate/batch`: the same validation as the writes,
answered as a report, never a write."""

from __future__ import annotations

import functools

from aiohttp import web

from rwasync.ingest_api.bodies import invalid_document
from rwasync.ingest_api.context import PROVIDER_AUTH, TENANT, Ingest
from rwasync.ingest_api.documents import ASSETS, body_asset, checked_batch, off_the_loop
from rwasync.ingest_api.models import AssetBatch, BatchValidity, Validity
from rwasync.platform.http import json_response
from rwasync.platform.openapi import Body, Operation, Reply
from rwasync.schema.asset import Asset
from rwasync.schema.errors import AssetInvalid

PROBLEMS = (400, 408, 413, 415, 503)


class Validation:
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "POST",
                "/v1/validate/asset",
                self.validate_asset,
                "validateAsset",
                "Validate one asset document; nothing is written",
                replies=(Reply(200, "the report", Validity),),
                problems=PROBLEMS,
                params=(TENANT,),
                body=Body(Asset, judged=True),
                tag="validation",
                security=PROVIDER_AUTH,
            ),
            Operation(
                "POST",
                "/v1/validate/batch",
                self.validate_batch,
                "validateBatch",
                "Validate a batch as POST /v1/assets/batch would; nothing is written",
                replies=(Reply(200, "one report per item, in request order", BatchValidity),),
                problems=(*PROBLEMS, 422),
                params=(TENANT,),
                body=Body(AssetBatch),
                tag="validation",
                security=PROVIDER_AUTH,
            ),
        ]

    async def validate_asset(self, request: web.Request) -> web.Response:
        call = await self._ingest.validation_call(request)
        try:
            body_asset(call.body, call.json, call.arrival.received_at)
        except AssetInvalid as exc:
            return json_response({"valid": False, "errors": [e.as_dict() for e in exc.errors]})
        return json_response({"valid": True, "errors": []})

    async def validate_batch(self, request: web.Request) -> web.Response:
        call = await self._ingest.validation_call(request, batch=True)
        try:
            checked = await off_the_loop(
                functools.partial(
                    checked_batch,
                    call.body,
                    functools.partial(call.json, ASSETS),
                    call.arrival.received_at,
                    max_item_bytes=self._ingest.single.max_bytes,
                ),
                len(call.body),
            )
        except AssetInvalid as exc:
            raise invalid_document("batch", exc.errors) from None
        results = [
            {
                "index": item.index,
                "id": item.id,
                "valid": item.errors is None,
                "errors": [e.as_dict() for e in item.errors or []],
            }
            for item in checked
        ]
        return json_response(
            {"valid": all(result["valid"] for result in results), "results": results}
        )
