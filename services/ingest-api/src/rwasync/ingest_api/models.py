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


class AssetAtPath(Asset):
    """`PUT /v1/assets/{id}`: an asset document whose `id` may be left out (the path's is used);
    given, it must equal the path's."""

    id: AssetId | None = None  # type: ignore[assignment]


class JudgedAlone:
    """The JSON Schema of a batch item: the item's own schema, or anything at all — the batch is
    accepted either way, and an item that breaks the schema (or is larger than one sent alone
    may be) is rejected on its own in `results`.
    (A schema with only the item's would promise a 4xx for a batch holding one bad item.)"""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        item: dict[str, Any] = handler(core_schema)
        return {
            "anyOf": [item, {}],
            "description": "an item as described, no larger as sent than a single-item call "
            "takes (RWASYNC_INGEST_MAX_BODY_BYTES); else rejected alone in `results`",
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
    trace_id: str | None = None


# --- feeds ----------------------------------------------------------------------------------------
# The feed API's requests are checked by `rwasync.store.feed_settings.parse_feed_settings` (the
# CLI's rules, errors naming the field); these models describe them in the API document.

FeedFormatName = Literal["json", "jsonl", "csv"]
RunStatusName = Literal["queued", "running", "ok", "not_modified", "held", "failed", "rejected"]


class FeedAuthSettings(BaseModel):
    """How the poller authenticates to the feed: `none`; `basic` (`username`, `password`);
    `bearer` (`token`); `header` (`name`, `value`). Secrets are sealed at rest, never returned."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["none", "basic", "bearer", "header"]
    username: str | None = None
    password: str | None = None
    token: str | None = None
    name: str | None = None
    value: str | None = None


class DeletionThresholdSettings(BaseModel):
    """Hold a run deleting more than `percent` % of the provider's live assets and more than
    `min_count` of them."""

    model_config = ConfigDict(extra="forbid")

    percent: Annotated[float, Field(ge=0, le=100)] = 20
    min_count: Annotated[int, Field(ge=0, le=2**31 - 1)] = 5


class FeedRegistration(BaseModel):
    """`PUT /v1/feeds/{feed_id}`; also the URL form of `POST /v1/validate/feed`."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(max_length=2000, description="absolute http(s) URL, public host")]
    format: FeedFormatName = "json"
    schedule: str | None = Field(None, description="an interval (15m, 24h) or a cron expression")
    auth: FeedAuthSettings | None = None
    deletion_threshold: DeletionThresholdSettings | None = None
    enabled: bool = Field(
        True,
        description="false: off its schedule (no next run; a triggered run still runs); "
        "true again: it runs once soon, then on its schedule",
    )


class FeedAuthShown(BaseModel):
    """A feed's credentials as reads show them: the kind and names, never the secret."""

    type: Literal["none", "basic", "bearer", "header"]
    username: str | None = None
    header: str | None = None


class Feed(BaseModel):
    feed_id: str
    provider_id: str
    url: str
    format: FeedFormatName
    schedule: str | None
    interval_seconds: int | None
    cron: str | None
    auth: FeedAuthShown
    deletion_threshold: DeletionThresholdSettings
    enabled: bool
    next_run_at: str | None = Field(
        description="when the schedule next queues a run; null while disabled or for a feed "
        "that runs only when triggered"
    )
    created_at: str | None
    updated_at: str | None


class FeedPage(BaseModel):
    items: list[Feed]
    next_cursor: str | None


class RunCounts(BaseModel):
    seen: int
    created: int
    updated: int
    unchanged: int
    # Runs recorded before this count was kept read 0.
    stale: int = Field(
        0,
        description="of the unchanged, items older than the stored asset or its deletion "
        "(a newer push, say): nothing of them was sent",
    )
    deleted: int
    invalid: int
    held_deletions: int


class FeedItemErrors(BaseModel):
    """One invalid or superseded feed item: its position in the feed (from 0), its id if it
    had one, and its errors (pointers relative to the item)."""

    index: int
    # Absent when the item had no usable id.
    id: str | None = None
    errors: list[ItemError]


class FeedRun(BaseModel):
    run_id: str
    feed_id: str
    status: RunStatusName
    trigger: Literal["manual", "schedule"]
    requested_at: str | None
    started_at: str | None
    finished_at: str | None
    snapshot_time: str | None
    counts: RunCounts
    errors: list[FeedItemErrors]
    reason: str | None = None
    reason_code: str | None = None


class RunPage(BaseModel):
    items: list[FeedRun]
    next_cursor: str | None


class RunRequested(BaseModel):
    run_id: str


class PreviewCounts(BaseModel):
    seen: int
    invalid: int


class PreviewChanges(BaseModel):
    create: int
    update: int
    unchanged: int
    delete: int


class FeedPreview(BaseModel):
    """What a run of this feed would do now, written nowhere: `status` `ok`, `held` (with the
    hold's `reason_code`) or `failed` (the fetch or the file; then only the reason)."""

    valid: bool
    status: Literal["ok", "held", "failed"]
    reason_code: str | None = None
    reason: str | None = None
    snapshot_time: str | None = None
    total_assets: int | None = None
    counts: PreviewCounts | None = None
    preview: PreviewChanges | None = None
    errors: list[FeedItemErrors] | None = None


# --- the portal catalogue -------------------------------------------------------------------------


class CatalogMeta(BaseModel):
    provider_id: str
    updated_at: str
    content_hash: str | None
    applied_at: str


class CatalogAsset(BaseModel):
    """A live asset as applied (normalised), with whose it is in `_meta`."""

    model_config = ConfigDict(extra="allow")

    id: str
    meta: CatalogMeta = Field(alias="_meta")


class CatalogPage(BaseModel):
    items: list[CatalogAsset]
    next_cursor: str | None


class CatalogChange(BaseModel):
    cursor: str
    event_id: str
    type: Literal["asset.upserted", "asset.deleted"]
    provider_id: str
    asset_id: str
    updated_at: str
    deleted: bool
    content_hash: str | None
    applied_at: str


class ChangePage(BaseModel):
    items: list[CatalogChange]
    next_cursor: str
