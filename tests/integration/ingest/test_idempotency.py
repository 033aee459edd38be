"""Idempotency-Key through the real service: a repeat gets the first answer and publishes
nothing, another request under the key is a 422, concurrent requests with one key publish once,
a failed request gives the key back, and a key still in flight makes a repeat wait, then 409."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from multidict import CIMultiDict

from rwasync.platform.db import Database
from tests.integration.ingest.conftest import Provider, Queues, create_provider
from tests.integration.ingest.helpers import JSON, Client, house, problem

pytestmark = pytest.mark.integration


async def put(
    client: Client, provider: Provider, key: str, body: Any, asset_id: str = "idem-1"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = await client.put(
        f"/v1/assets/{asset_id}",
        data=json.dumps(body),
        headers={**JSON, **provider.basic, "Idempotency-Key": key},
    )
    return response.status, json.loads(await response.text()), dict(response.headers)


async def test_a_repeat_gets_the_first_answer_and_publishes_nothing(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    first = await put(ingest, provider, "key-1", house("idem-1"))
    again = await put(ingest, provider, "key-1", house("idem-1"))
    assert first[0] == again[0] == 202
    assert first[1] == again[1]  # the same event_id
    assert again[2]["Location"] == first[2]["Location"]
    assert again[2]["Idempotent-Replayed"] == "true"
    await queues.next(queues.assets)
    await asyncio.sleep(0.3)
    assert await queues.depth(queues.assets) == 0


async def test_the_same_key_with_another_body_is_422(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    await put(ingest, provider, "key-2", house("idem-1"))
    status, body, _ = await put(ingest, provider, "key-2", house("idem-1", name="Other"))
    assert status == 422 and body["type"].endswith("idempotency-key-reused")
    # Another path with the same key is another request too.
    status, _, _ = await put(ingest, provider, "key-2", house("idem-2"), asset_id="idem-2")
    assert status == 422


async def test_keys_are_scoped_per_provider(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    other = await create_provider(store)
    mine = await put(ingest, provider, "shared-key", house("idem-1"))
    theirs = await put(ingest, other, "shared-key", house("idem-1"))
    assert mine[0] == theirs[0] == 202
    assert mine[1]["event_id"] != theirs[1]["event_id"]


async def test_concurrent_requests_with_one_key_publish_once(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    answers = await asyncio.gather(
        *(put(ingest, provider, "key-3", house("idem-1")) for _ in range(8))
    )
    assert {status for status, _, _ in answers} == {202}
    assert len({body["event_id"] for _, body, _ in answers}) == 1
    await queues.next(queues.assets)
    await asyncio.sleep(0.3)
    assert await queues.depth(queues.assets) == 0


async def test_a_failed_request_gives_the_key_back(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    status, _, _ = await put(ingest, provider, "key-4", house("idem-1", status="bogus"))
    assert status == 422
    # The key is free again: another (valid) body under it is accepted, not a 422 for reuse.
    status, body, _ = await put(ingest, provider, "key-4", house("idem-1"))
    assert status == 202, body


async def test_a_key_still_in_flight_makes_a_repeat_wait_then_409(
    ingest: Client, provider: Provider, store: Database
) -> None:
    # A claim without an answer, as a request still publishing leaves it.
    body = json.dumps(house("idem-1")).encode()
    claimed = hashlib.sha256(b"PUT /v1/assets/idem-1\n" + body).digest()
    await store.execute(
        "INSERT INTO idempotency_keys (provider_id, idempotency_key, fingerprint)"
        " VALUES ($1, 'key-5', $2)",
        provider.provider_id,
        claimed,
    )
    response = await ingest.put(
        "/v1/assets/idem-1",
        data=body,
        headers={**JSON, **provider.basic, "Idempotency-Key": "key-5"},
    )
    await problem(response, 409)
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("key", ["", "k" * 256, "k\u00e9", "k\u00a0"])
async def test_a_malformed_key_is_400(ingest: Client, provider: Provider, key: str) -> None:
    response = await ingest.put(
        "/v1/assets/idem-1",
        data=json.dumps(house("idem-1")),
        headers={**JSON, **provider.basic, "Idempotency-Key": key},
    )
    await problem(response, 400)


async def test_two_keys_are_400_and_publish_nothing(
    ingest: Client, provider: Provider, queues: Queues
) -> None:
    """The first of two keys counted, so a retry with the second published again (a trial)."""
    headers = CIMultiDict({**JSON, **provider.basic})
    headers.add("Idempotency-Key", "k-a")
    headers.add("Idempotency-Key", "k-b")
    response = await ingest.put(
        "/v1/assets/idem-2", data=json.dumps(house("idem-2")), headers=headers
    )
    refused = await problem(response, 400)
    assert "more than one Idempotency-Key header" in refused["detail"]
    assert await queues.assets.get(no_ack=True, fail=False) is None


async def test_the_validation_calls_check_a_keys_form_and_otherwise_ignore_it(
    ingest: Client, provider: Provider, store: Database
) -> None:
    """A validation writes nothing, so a key there stores no answer: the same key with another
    body is validated afresh (no 422), and a real write with that key is not answered by a
    validation's 200. A key of the wrong form, or two keys, are the 400 a write would answer
    (a partner's trial: they were taken in silence)."""
    calls = [
        ("/v1/validate/asset", house("val-1"), house("val-2", status="bogus")),
        ("/v1/validate/batch", {"assets": [house("val-1")]}, {"assets": [house("val-2")]}),
        ("/v1/validate/feed", [house("val-1")], [house("val-2")]),
    ]
    for path, first, second in calls:
        for headers in (
            CIMultiDict({**JSON, **provider.bearer, "Idempotency-Key": "é"}),
            CIMultiDict([*JSON.items(), *provider.bearer.items(), *two_keys()]),
        ):
            response = await ingest.post(path, data=json.dumps(first), headers=headers)
            refused = await problem(response, 400)
            assert (
                refused["type"].endswith("/bad-idempotency-key")
                or "more than one" in (refused["detail"])
            ), (path, refused)
        keyed = {**JSON, **provider.bearer, "Idempotency-Key": f"val{path}"}
        for document in (first, second):
            response = await ingest.post(path, data=json.dumps(document), headers=keyed)
            assert response.status == 200, (path, await response.text())
    stored = "SELECT count(*) FROM idempotency_keys WHERE provider_id = $1"
    assert await store.fetchval(stored, provider.provider_id) == 0
    # a write with a key a validation carried is a write
    response = await ingest.put(
        "/v1/assets/val-1",
        data=json.dumps(house("val-1")),
        headers={**JSON, **provider.bearer, "Idempotency-Key": "val/v1/validate/asset"},
    )
    assert response.status == 202, await response.text()


def two_keys() -> list[tuple[str, str]]:
    return [("Idempotency-Key", "k-a"), ("Idempotency-Key", "k-b")]


async def test_deletes_and_batches_are_idempotent_too(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    headers = {**provider.bearer, "Idempotency-Key": "key-6"}
    first = await ingest.delete("/v1/assets/idem-9", headers=headers)
    again = await ingest.delete("/v1/assets/idem-9", headers=headers)
    assert first.status == again.status == 202
    assert await first.json() == await again.json()

    batch = json.dumps({"assets": [house("idem-b1"), house("idem-b2")]})
    headers = {**JSON, **provider.bearer, "Idempotency-Key": "key-7"}
    first = await ingest.post("/v1/assets/batch", data=batch, headers=headers)
    again = await ingest.post("/v1/assets/batch", data=batch, headers=headers)
    assert first.status == again.status == 202
    assert await first.json() == await again.json()
