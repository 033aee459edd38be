"""Batches through the real service: per-item results in request order, a bad item never blocks
the good ones, many events per broker message, consecutive acceptance instants, every receipt;
and the whole batch refused when the broker cannot confirm it."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from aio_pika.abc import AbstractQueue

from rwasync.ingest_api.app import create_app
from rwasync.platform.db import Database
from rwasync.schema import topology
from rwasync.schema.events import AnyEvent, AssetUpserted, EventSource, PriceUpdated
from rwasync.schema.messages import decode_message
from tests.integration.ingest.conftest import (
    Provider,
    Queues,
    create_provider,
    ingest_settings,
    readiness,
    serve,
)
from tests.integration.ingest.helpers import (
    JSON,
    NOWHERE_AMQP,
    Client,
    house,
    pointers,
    problem,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def drain(queues: Queues, queue: AbstractQueue, events: int) -> tuple[int, list[AnyEvent]]:
    """(messages, events) until `events` events arrived."""
    seen: list[AnyEvent] = []
    messages = 0
    while len(seen) < events:
        message = await queues.next(queue)
        messages += 1
        seen.extend(decode_message(message.body).events)
    return messages, seen


async def post(client: Client, path: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.post(path, data=json.dumps(body), headers={**JSON, **headers})
    text = await response.text()
    assert response.status == 202, text
    answer: dict[str, Any] = json.loads(text)
    return answer


async def test_asset_batch_answers_each_item_and_publishes_the_good_ones_together(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    items: list[Any] = [house(f"b-{n}") for n in range(1200)]
    items[3] = house("b-3", status="bogus", location={"lat": 100, "lon": 0})
    items[10] = "not an object"
    items[1199] = {**house("b-1199"), "colour": "red"}
    answer = await post(ingest, "/v1/assets/batch", {"assets": items}, provider.basic)

    assert (answer["accepted"], answer["rejected"]) == (1197, 3)
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(1200))
    assert results[0]["status"] == "accepted" and results[0]["id"] == "b-0"
    assert results[3] == {
        "index": 3,
        "id": "b-3",
        "status": "rejected",
        "errors": results[3]["errors"],
    }
    assert pointers(results[3]) == {"/status", "/location/lat"}
    assert results[10]["status"] == "rejected" and results[10]["id"] is None
    assert pointers(results[1199]) == {"/colour"}

    messages, events = await drain(queues, queues.assets, 1197)
    assert messages == 2  # 1,000 events per message
    by_id = {str(e.event_id): e for e in events}
    accepted = [r for r in results if r["status"] == "accepted"]
    assert set(by_id) == {r["event_id"] for r in accepted}
    ordered = [by_id[r["event_id"]] for r in accepted]
    instants = [e.accepted_at for e in ordered]
    assert instants == sorted(instants) and len(set(instants)) == 1197
    assert all(isinstance(e, AssetUpserted) and e.source == EventSource.BATCH for e in ordered)
    assert [e.asset_id for e in ordered] == [r["id"] for r in accepted]

    await receipts_match(store, ordered)


async def receipts_match(store: Database, events: list[AnyEvent]) -> None:
    """Every event has its `accepted` receipt, saying exactly what the event says."""
    rows = await store.fetch(
        "SELECT event_id, provider_id, asset_id, type, status, accepted_at, trace_id"
        " FROM event_receipts WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )
    assert sorted(tuple(r) for r in rows) == sorted(
        (e.event_id, e.provider_id, e.asset_id, str(e.type), "accepted", e.accepted_at, e.trace_id)
        for e in events
    )


async def test_price_batch_goes_to_the_pricing_exchange_only(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    ticks: list[Any] = [
        {
            "asset_id": f"p-{n % 7}",
            "amount": f"{50 + n}.5",
            "currency": "usd",
            "as_of": f"2025-06-01T10:{n % 60:02d}:00Z",
        }
        for n in range(300)
    ]
    ticks[5] = {"asset_id": "bad id", "amount": -1, "currency": "US", "as_of": "soon"}
    answer = await post(ingest, "/v1/prices", {"prices": ticks}, provider.bearer)
    assert (answer["accepted"], answer["rejected"]) == (299, 1)
    assert answer["results"][5]["asset_id"] == "bad id"
    assert pointers(answer["results"][5]) == {"/asset_id", "/amount", "/currency", "/as_of"}
    messages, events = await drain(queues, queues.prices, 299)
    assert messages == 2
    first = events[0]
    assert isinstance(first, PriceUpdated)
    assert (first.asset_id, first.payload.amount, first.payload.currency) == (
        "p-0",
        Decimal("50.5"),
        "USD",
    )
    assert await queues.depth(queues.assets) == 0
    assert [e.asset_id for e in events] == [t["asset_id"] for i, t in enumerate(ticks) if i != 5]
    await receipts_match(store, events)


async def test_batch_envelope_errors_are_422(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    for body, expected in (
        ({"assets": "nope"}, {"/assets"}),
        ({}, {"/assets"}),
        ({"assets": [], "extra": 1}, {"/extra"}),
        ({"assets": [house("x")] * 5001}, {"/assets"}),
    ):
        response = await ingest.post(
            "/v1/assets/batch", data=json.dumps(body), headers={**JSON, **provider.basic}
        )
        assert pointers(await problem(response, 422)) == expected
    response = await ingest.post(
        "/v1/prices",
        data=json.dumps({"prices": [{"asset_id": "a"}] * 10_001}),
        headers={**JSON, **provider.basic},
    )
    assert pointers(await problem(response, 422)) == {"/prices"}
    assert await queues.depth(queues.assets) == 0


async def test_an_empty_batch_is_accepted_with_nothing_in_it(
    ingest: Client, provider: Provider
) -> None:
    answer = await post(ingest, "/v1/assets/batch", {"assets": []}, provider.basic)
    assert answer == {"accepted": 0, "rejected": 0, "results": []}


async def test_batch_body_limit_is_its_own_setting(database_url: str, vhost_amqp_url: str) -> None:
    db = Database(database_url, min_size=1, max_size=2)
    db.start()
    await db.wait_connected(timeout=30)
    provider = await create_provider(db)
    settings = ingest_settings(database_url, vhost_amqp_url, max_batch_body_bytes=64 * 1024)
    client = await serve(create_app(settings))
    try:
        await eventually(lambda: readiness(client), lambda body: body["status"] == "ready")
        body = json.dumps({"assets": [house(f"big-{n}") for n in range(200)]})
        assert len(body) > 64 * 1024
        response = await client.post(
            "/v1/assets/batch", data=body, headers={**JSON, **provider.basic}
        )
        await problem(response, 413)
        # A single asset's limit (1 MiB) is untouched by it.
        response = await client.post(
            "/v1/validate/asset",
            data=json.dumps(house("one", description="x" * 100_000)),
            headers={**JSON, **provider.basic},
        )
        assert response.status == 200, await response.text()
    finally:
        await client.close()
        await db.close()


async def test_broker_away_refuses_the_whole_batch_with_503(database_url: str) -> None:
    db = Database(database_url, min_size=1, max_size=2)
    db.start()
    await db.wait_connected(timeout=30)
    provider = await create_provider(db)
    client = await serve(create_app(ingest_settings(database_url, NOWHERE_AMQP)))
    try:
        await eventually(
            lambda: readiness(client), lambda body: body["checks"]["database"], timeout=30
        )
        response = await client.post(
            "/v1/assets/batch",
            data=json.dumps({"assets": [house("a"), house("b")]}),
            headers={**JSON, **provider.basic},
        )
        await problem(response, 503)
        assert int(response.headers["Retry-After"]) > 0
        assert await db.fetchval("SELECT count(*) FROM event_receipts") == 0
    finally:
        await client.close()
        await db.close()


async def test_a_batch_of_large_documents_goes_in_messages_within_the_brokers_size_budget(
    ingest: Client, provider: Provider, queues: Queues
) -> None:
    """1,000 valid assets in a 7 MB body (limits: 5,000 items, 16 MiB) went out as one message of
    `RWASYNC_INGEST_EVENTS_PER_MESSAGE` (1,000) events, cut by count only; an event can be far
    larger than its item (each attribute `1e99` becomes a 100-digit string), so that message was
    17 MB: RabbitMQ 4 (16 MiB `max_message_size` by default) refuses it, and the batch was a 503
    on every retry (review). Messages are now cut at `topology.MESSAGE_BYTES_BUDGET` too."""
    attributes = ",".join(f'"k{i}":1e99' for i in range(100))
    description = "d" * 6000
    items = [
        f'{{"id":"big-{n}","updated_at":"2025-05-30T09:15:00Z","status":"active","name":"n",'
        f'"description":"{description}","attributes":{{{attributes}}}}}'
        for n in range(1000)
    ]
    request = ('{"assets":[' + ",".join(items) + "]}").encode()
    assert len(request) < 8 * 1024**2
    response = await ingest.post(
        "/v1/assets/batch",
        data=request,
        headers={**provider.bearer, "Content-Type": "application/json"},
    )
    answer = await response.json()
    assert response.status == 202, answer
    assert answer["accepted"] == 1000
    ids: list[str] = []
    while len(ids) < 1000:
        message = await queues.next(queues.assets, timeout=10)
        assert len(message.body) <= topology.MESSAGE_BYTES_BUDGET, len(message.body)
        ids += [e["asset_id"] for e in json.loads(message.body)["events"]]
    assert sorted(ids) == sorted(f"big-{n}" for n in range(1000))


@pytest.mark.parametrize("path", ["/v1/assets/batch", "/v1/validate/batch"])
async def test_a_batch_slow_to_check_leaves_the_service_answering_others(
    ingest: Client, provider: Provider, path: str
) -> None:
    """5,000 items of 100 bad attributes each take seconds to check: the check ran on the event
    loop, and the process answered nothing else meanwhile (a trial: /healthz waited 7.7 s). It
    runs in a worker thread now: a health check sent while it runs is answered before it ends."""
    bad = {**house("slow"), "attributes": {f"a{n}": [] for n in range(100)}}
    batch = asyncio.create_task(
        ingest.post(path, json={"assets": [bad] * 5000}, headers=provider.basic)
    )
    await asyncio.sleep(0.3)  # the batch is being checked
    health = await ingest.get("/healthz")
    assert health.status == 200
    assert not batch.done(), "the batch ended before the health check: too quick to tell"
    response = await batch
    assert response.status in (200, 202)
    answer = await response.json()
    assert len(answer["results"]) == 5000
