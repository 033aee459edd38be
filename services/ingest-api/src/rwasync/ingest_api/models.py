"""The provider API's request envelopes and answers as pydantic models: the envelopes validate
requests, and with the asset and price contracts they generate `/v1/openapi.json`.

A batch envelope checks only its own shape: each item is validated on its own afterwards (a bad
item is rejected with pointers relative to it, and never blocks the others), so the items are
kept as sent (`SkipValidation`). Their schema says both: what an item must be to be accepted, or
any value, which is then rejected in the answer's `results` (`JudgedAlone`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, SkipValidation
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from rwasync.schema.asset import Asset, AssetId
from rwasync.schema.fields import AwareTimestamp, ContractModel, Text
from rwasync.schema.price import Price

MAX_ASSET_BATCH: Final = 5000
MAX_PRICE_BATCH: Final = 10_000


# --- requests -------------------------------------------------------------------------------------


class JudgedAlone:
    """The JSON Schema of a batch item: the item's own schema, or anything at all — the batch is
    accepted either way, and an item that breaks the schema is rejected on its own in `results`.
    (A schema with only the item's would promise a 4xx for a batch holding one bad item.)"""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        item: dict[str, Any] = handler(core_schema)
        return {
            "anyOf": [item, {}],
            "description": "an item as described (else rejected alone in `results`)",
        }


class AssetBatch(ContractModel):
    """`POST /v1/assets/batch` and `POST /v1/validate/batch`."""

    assets: Annotated[
        list[Annotated[SkipValidation[Asset], JudgedAlone()]], Field(max_length=MAX_ASSET_BATCH)
    ]


class PriceItem(Price):
    """One tick of `POST /v1/prices`: a price of one of the provider's assets."""

    asset_id: AssetId


class PriceBatch(ContractModel):
    """`POST /v1/prices`."""

    prices: Annotated[
        list[Annotated[SkipValidation[PriceItem], JudgedAlone()]],
        Field(max_length=MAX_PRICE_BATCH),
    ]


class Deletion(ContractModel):
    """The optional body of `DELETE /v1/assets/{id}`."""

    reason: Text | None = None
    # The deletion's version time; default: when the request was received.
    deleted_at: AwareTimestamp | None = None


# --- answers --------------------------------------------------------------------------------------


class ItemError(BaseModel):
    pointer: str
    message: str


class Accepted(BaseModel):
    event_id: str
    status: Literal["accepted"]


class AssetBatchResult(BaseModel):
    index: int
    id: str | None
    status: Literal["accepted", "rejected"]
    event_id: str | None = None
    errors: list[ItemError] | None = None


class AssetBatchAnswer(BaseModel):
    accepted: int
    rejected: int
    results: list[AssetBatchResult]


class PriceBatchResult(BaseModel):
    index: int
    asset_id: str | None
    status: Literal["accepted", "rejected"]
    event_id: str | None = None
    errors: list[ItemError] | None = None


class PriceBatchAnswer(BaseModel):
    accepted: int
    rejected: int
    results: list[PriceBatchResult]


class Validity(BaseModel):
    valid: bool
    errors: list[ItemError]


class BatchItemValidity(BaseModel):
    index: int
    id: str | None
    valid: bool
    errors: list[ItemError]


class BatchValidity(BaseModel):
    valid: bool
    results: list[BatchItemValidity]


class StoredMeta(BaseModel):
    updated_at: str
    content_hash: str | None
    deleted: bool
    applied_at: str


class StoredAsset(BaseModel):
    """The applied document as stored (normalised), with `_meta`."""

    model_config = ConfigDict(extra="allow")

    id: str
    meta: StoredMeta = Field(alias="_meta")


class AssetPage(BaseModel):
    items: list[StoredAsset]
    next_cursor: str | None


class Receipt(BaseModel):
    event_id: str
    type: Literal["asset.upserted", "asset.patched", "asset.deleted", "price.updated"]
    asset_id: str
    status: Literal["accepted", "applied", "stale_ignored", "duplicate", "rejected", "held"]
    reason: str | None = None
    latest: bool | None = None
