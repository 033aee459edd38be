"""Batch writes: `POST /v1/assets/batch` (up to 5000 assets) and `POST /v1/prices` (up to 10,000
ticks). Each item is validated on its own (one larger than a push of it alone may be is rejected
for that) and answered in request order; the good items take consecutive acceptance instants,
travel many per broker message (chunks published concurrently), and get their `accepted`
receipts in one statement. If the broker does not confirm every chunk,
the whole request is a 503 (never a partial 202)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from rwasync.ingest_api.acceptance import asset_upserted
from rwasync.ingest_api.bodies import invalid_document
from rwasync.ingest_api.callers import Call
from rwasync.ingest_api.context import (
    IDEMPOTENCY_KEY,
    PROVIDER_AUTH,
    TENANT,
    WRITE_PROBLEMS,
    Ingest,
)
from rwasync.ingest_api.documents import (
    ASSETS,
    PRICES,
    Checked,
    checked_batch,
    checked_prices,
    off_the_loop,
)
from rwasync.ingest_api.models import (
    AssetBatch,
    AssetBatchAnswer,
    PriceBatch,
    PriceBatchAnswer,
    PriceItem,
)
from rwasync.platform.http import json_response
from rwasync.platform.openapi import Body, Operation, Reply
from rwasync.schema.errors import AssetInvalid
from rwasync.schema.event_ids import new_event_ids
from rwasync.schema.events import Arrival, EventSource
from rwasync.schema.messages import WireEvent, price_updated_wire

# An accepted item's event on the wire, from its value, arrival, acceptance instant and a fresh
# event id.
MakeEvent = Callable[[Any, Arrival, datetime, str], WireEvent]


def _price_updated(
    tick: PriceItem, arrival: Arrival, accepted_at: datetime, event_id: str
) -> WireEvent:
    return price_updated_wire(
        arrival,
        event_id=event_id,
        asset_id=tick.asset_id,
        amount=tick.amount,
        currency=tick.currency,
        as_of=tick.as_of,
        accepted_at=accepted_at,
    )


class Batches:
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    def operations(self) -> list[Operation]:
        common: dict[str, Any] = {
            "problems": WRITE_PROBLEMS,
            "params": (IDEMPOTENCY_KEY, TENANT),
            "security": PROVIDER_AUTH,
        }
        return [
            Operation(
                "POST",
                "/v1/assets/batch",
                self.post_assets,
                "postAssetBatch",
                "Create or replace up to 5000 assets, each accepted or rejected on its own",
                replies=(Reply(202, "every item answered in request order", AssetBatchAnswer),),
                body=Body(AssetBatch),
                tag="assets",
                **common,
            ),
            Operation(
                "POST",
                "/v1/prices",
                self.post_prices,
                "postPrices",
                "Push up to 10,000 price ticks, each accepted or rejected on its own",
                replies=(Reply(202, "every tick answered in request order", PriceBatchAnswer),),
                body=Body(PriceBatch),
                tag="prices",
                **common,
            ),
        ]

    async def post_assets(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._assets, batch=True, source=EventSource.BATCH)

    async def _assets(self, call: Call) -> web.Response:
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
        return await self._accept(
            call,
            checked,
            asset_upserted,
            "id",
        )

    async def post_prices(self, request: web.Request) -> web.Response:
        return await self._ingest.write(request, self._prices, batch=True, source=EventSource.BATCH)

    async def _prices(self, call: Call) -> web.Response:
        try:
            checked = await off_the_loop(
                functools.partial(
                    checked_prices,
                    call.body,
                    functools.partial(call.json, PRICES),
                    call.arrival.received_at,
                    max_item_bytes=self._ingest.single.max_bytes,
                ),
                len(call.body),
            )
        except AssetInvalid as exc:
            raise invalid_document("batch", exc.errors) from None
        return await self._accept(call, checked, _price_updated, "asset_id")

    async def _accept(
        self, call: Call, checked: Sequence[Checked], make: MakeEvent, id_key: str
    ) -> web.Response:
        good = [item for item in checked if item.errors is None]
        instants = self._ingest.clock.instants(len(good)) if good else []
        events = [
            make(item.value, call.arrival, at, event_id)
            for item, at, event_id in zip(good, instants, new_event_ids(len(good)), strict=True)
        ]
        await self._ingest.publisher.accept_many(events)
        # The good items' events, in the same (request) order.
        event_ids = (str(event["event_id"]) for event in events)
        results = [
            {
                "index": item.index,
                id_key: item.id,
                "status": "accepted",
                "event_id": next(event_ids),
            }
            if item.errors is None
            else {
                "index": item.index,
                id_key: item.id,
                "status": "rejected",
                "errors": [e.as_dict() for e in item.errors],
            }
            for item in checked
        ]
        return json_response(
            {"accepted": len(good), "rejected": len(checked) - len(good), "results": results},
            status=202,
        )
