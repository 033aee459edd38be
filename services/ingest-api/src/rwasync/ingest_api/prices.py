"""`PUT /v1/assets/{id}/price`: one price tick onto the pricing exchange (the batch of ticks,
`POST /v1/prices`, is in `batches`)."""

from __future__ import annotations

import structlog
from aiohttp import web

from rwasync.ingest_api.acceptance import price_updated
from rwasync.ingest_api.asset_writes import ACCEPTED
from rwasync.ingest_api.bodies import invalid_document
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
from rwasync.ingest_api.documents import path_id_errors
from rwasync.platform.openapi import Body, Operation
from rwasync.schema.errors import AssetInvalid
from rwasync.schema.price import Price, parse_price


class Prices:
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "PUT",
                "/v1/assets/{id}/price",
                self.put_price,
                "putPrice",
                "Push one price tick of an asset (known or not yet)",
                replies=(ACCEPTED,),
                problems=WRITE_PROBLEMS,
                params=(ASSET_ID_PARAM, IDEMPOTENCY_KEY, TENANT),
                body=Body(Price),
                tag="prices",
                security=PROVIDER_AUTH,
            )
        ]

    async def put_price(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._put)

    async def _put(self, call: Call) -> web.Response:
        asset_id = call.request.match_info["id"]
        errors = path_id_errors(asset_id)
        try:
            price = parse_price(call.json(), now=call.arrival.received_at)
        except AssetInvalid as exc:
            raise invalid_document("price", errors + exc.errors) from None
        if errors:
            raise invalid_document("price", errors)
        structlog.contextvars.bind_contextvars(asset_id=asset_id)
        event = price_updated(asset_id, price, call.arrival, self._ingest.clock.next())
        await self._ingest.publisher.accept_one(event)
        return accepted(event)
