"""POST, PATCH and DELETE of one asset through the real service: what each publishes, its
receipt, and its refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from rwasync.platform.db import Database
from rwasync.schema.events import AssetDeleted, AssetPatched, AssetUpserted
from rwasync.schema.messages import decode_message
from tests.integration.ingest.conftest import Provider, Queues
from tests.integration.ingest.helpers import (
    JSON,
    Client,
    accepted_event_id,
    house,
    pointers,
    problem,
)

pytestmark = pytest.mark.integration

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


async def receipt_type(store: Database, event_id: object) -> tuple[str, str] | None:
    row = await store.fetchrow(
        "SELECT type, status FROM event_receipts WHERE event_id = $1", event_id
    )
    return (row["type"], row["status"]) if row is not None else None


# --- POST /v1/assets ------------------------------------------------------------------------------


async def test_post_takes_the_id_from_the_body(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    response = await ingest.post(
        "/v1/assets", data=json.dumps(house("posted-1")), headers={**JSON, **provider.basic}
    )
    event_id = await accepted_event_id(response)
    (event,) = decode_message((await queues.next(queues.assets)).body).events
    assert isinstance(event, AssetUpserted)
    assert (event.event_id, event.asset_id) == (event_id, "posted-1")
    assert await receipt_type(store, event_id) == ("asset.upserted", "accepted")

    sent = house("x")
    del sent["id"]
    body = await problem(
        await ingest.post("/v1/assets", data=json.dumps(sent), headers={**JSON, **provider.basic}),
        422,
    )
    assert pointers(body) == {"/id"}
    assert await queues.depth(queues.assets) == 0


# --- PATCH /v1/assets/{id} ------------------------------------------------------------------------


async def test_patch_publishes_the_normalised_merge_patch(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    patch = {
        "updated_at": "2025-06-01T10:00:00+02:00",
        "price": {"amount": "55.00", "currency": "usd"},
        "description": None,
        "attributes": {"garage": None, "floors": 2.0},
        "_meta": {"ignored": True},
    }
    response = await ingest.patch(
        "/v1/assets/patch-1", data=json.dumps(patch), headers={**MERGE_PATCH, **provider.bearer}
    )
    event_id = await accepted_event_id(response)
    message = await queues.next(queues.assets)
    assert message.routing_key == "asset.patched"
    (event,) = decode_message(message.body).events
    assert isinstance(event, AssetPatched)
    assert event.event_id == event_id and event.asset_id == "patch-1"
    assert event.updated_at == datetime(2025, 6, 1, 8, tzinfo=UTC)
    assert event.payload.patch == {
        "updated_at": "2025-06-01T08:00:00.000000Z",
        "price": {"amount": "55", "currency": "USD"},
        "description": None,
        "attributes": {"garage": None, "floors": 2},
    }
    assert await receipt_type(store, event_id) == ("asset.patched", "accepted")

    # Plain application/json is accepted too.
    response = await ingest.patch(
        "/v1/assets/patch-1",
        data=json.dumps({"updated_at": "2025-06-01T11:00:00Z", "status": "sold"}),
        headers={**JSON, **provider.bearer},
    )
    await accepted_event_id(response)


async def test_invalid_patches_are_422_with_pointers_and_publish_nothing(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cases = [
        ({"status": "sold"}, {"/updated_at"}),
        ({"updated_at": future}, {"/updated_at"}),
        (
            {"updated_at": "2025-06-01T10:00:00Z", "name": None, "status": None},
            {"/name", "/status"},
        ),
        ({"updated_at": "2025-06-01T10:00:00Z", "id": "other"}, {"/id"}),
        ({"updated_at": "2025-06-01T10:00:00Z", "colour": "red"}, {"/colour"}),
        ({"updated_at": "2025-06-01T10:00:00Z", "name": "a\u0000b"}, {"/name"}),
        ({"updated_at": "2025-06-01T10:00:00Z", "token": {"chain": None}}, {"/token/chain"}),
        (
            {
                "updated_at": "2025-06-01T10:00:00Z",
                "token": {"chain": "ethereum", "contract_address": None},
            },
            {"/token/contract_address"},
        ),
        ({"updated_at": "2025-06-01T10:00:00Z", "location": {"lat": 91}}, {"/location/lat"}),
        (["not", "an", "object"], {""}),
    ]
    for patch, expected in cases:
        response = await ingest.patch(
            "/v1/assets/patch-2", data=json.dumps(patch), headers={**MERGE_PATCH, **provider.basic}
        )
        body = await problem(response, 422)
        assert pointers(body) == expected, patch
    response = await ingest.patch(
        "/v1/assets/patch-2",
        data=json.dumps({"updated_at": "2025-06-01T10:00:00Z"}),
        headers={"Content-Type": "text/plain", **provider.basic},
    )
    await problem(response, 415)
    assert await queues.depth(queues.assets) == 0


# --- DELETE /v1/assets/{id} -----------------------------------------------------------------------


async def test_delete_without_a_body_is_versioned_at_its_arrival(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    before = datetime.now(UTC)
    response = await ingest.delete("/v1/assets/never-seen-1", headers=provider.basic)
    event_id = await accepted_event_id(response)
    message = await queues.next(queues.assets)
    assert message.routing_key == "asset.deleted"
    (event,) = decode_message(message.body).events
    assert isinstance(event, AssetDeleted)
    assert event.asset_id == "never-seen-1" and event.payload.reason is None
    assert before <= event.updated_at == event.received_at <= event.accepted_at
    assert await receipt_type(store, event_id) == ("asset.deleted", "accepted")


async def test_a_delete_whose_chunked_body_is_empty_has_no_body(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    """Sent chunked, a body says only once read that it is empty: that was a 415 for want of a
    Content-Type, though an empty body is no body. A body with something in it still needs one."""

    async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    bare = {"headers": provider.basic, "skip_auto_headers": ["Content-Type"]}
    response = await ingest.delete("/v1/assets/chunked-1", data=chunks(), **bare)
    await accepted_event_id(response)
    (event,) = decode_message((await queues.next(queues.assets)).body).events
    assert isinstance(event, AssetDeleted) and event.asset_id == "chunked-1"
    response = await ingest.delete("/v1/assets/chunked-2", data=chunks(b'{"reason":"x"}'), **bare)
    await problem(response, 415)
    assert await queues.depth(queues.assets) == 0


async def test_delete_with_a_reason_and_deleted_at(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    response = await ingest.delete(
        "/v1/assets/del-1",
        data=json.dumps({"reason": "sold off-platform", "deleted_at": "2025-06-01T00:00:00Z"}),
        headers={**JSON, **provider.bearer},
    )
    await accepted_event_id(response)
    (event,) = decode_message((await queues.next(queues.assets)).body).events
    assert isinstance(event, AssetDeleted)
    assert event.payload.reason == "sold off-platform"
    assert event.updated_at == datetime(2025, 6, 1, tzinfo=UTC)


async def test_invalid_deletions_are_refused(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for sent, expected in (
        ({"deleted_at": future}, {"/deleted_at"}),
        ({"reason": "x\u0000"}, {"/reason"}),
        ({"why": "?"}, {"/why"}),
        (None, {""}),  # JSON null is a body that is not an object (it deleted: hostile trial)
        ([], {""}),
    ):
        response = await ingest.delete(
            "/v1/assets/del-2", data=json.dumps(sent), headers={**JSON, **provider.basic}
        )
        assert pointers(await problem(response, 422)) == expected
    response = await ingest.delete("/v1/assets/bad%20id", headers=provider.basic)
    assert pointers(await problem(response, 422)) == {"/id"}
    response = await ingest.delete(
        "/v1/assets/del-2",
        data=b"reason=x",
        headers={"Content-Type": "text/plain", **provider.basic},
    )
    await problem(response, 415)
    assert await queues.depth(queues.assets) == 0


async def test_dot_segment_ids_are_refused_everywhere_an_id_arrives(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    """`.` and `..` pass the id's character rule, but no URL carries them (clients remove dot
    segments): such an asset was pushed and listed, and never read (investor trial)."""
    for dots in (".", ".."):
        response = await ingest.post(
            "/v1/assets", data=json.dumps(house(dots)), headers={**JSON, **provider.basic}
        )
        assert pointers(await problem(response, 422)) == {"/id"}
        tick = {"asset_id": dots, "amount": "1", "currency": "USD", "as_of": "2026-01-01T00:00:00Z"}
        response = await ingest.post(
            "/v1/prices", data=json.dumps({"prices": [tick]}), headers={**JSON, **provider.basic}
        )
        answer = await response.json()
        assert answer["results"][0]["status"] == "rejected", answer
        assert "must not be '.' or '..'" in json.dumps(answer["results"][0]["errors"])
    assert await queues.depth(queues.assets) == 0
    assert await queues.depth(queues.prices) == 0
