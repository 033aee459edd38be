"""The API description and the validation calls: `/v1/openapi.json` (OpenAPI 3.1, every call
with its problem answers), `/docs` served from local files, and `/v1/validate/*` answering as
the writes would, writing nothing."""

from __future__ import annotations

import json

import jsonschema
import pytest

from rwasync.platform.db import Database
from rwasync.schema.asset import normalized_document, parse_asset
from tests.integration.ingest.conftest import Provider, Queues
from tests.integration.ingest.helpers import JSON, Client, house, problem

TOKEN_AS_TEXT = {
    "chain": "ethereum",
    "contract_address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    "total_supply": "1000",
    "decimals": "18",
}

pytestmark = pytest.mark.integration

CALLS = {
    ("put", "/v1/assets/{id}"),
    ("post", "/v1/assets"),
    ("patch", "/v1/assets/{id}"),
    ("delete", "/v1/assets/{id}"),
    ("post", "/v1/assets/batch"),
    ("get", "/v1/assets/{id}"),
    ("get", "/v1/assets"),
    ("get", "/v1/events/{event_id}"),
    ("put", "/v1/assets/{id}/price"),
    ("post", "/v1/prices"),
    ("post", "/v1/validate/asset"),
    ("post", "/v1/validate/batch"),
    ("get", "/v1/schema/asset.json"),
    ("get", "/v1/feeds"),
    ("put", "/v1/feeds/{feed_id}"),
    ("get", "/v1/feeds/{feed_id}"),
    ("post", "/v1/feeds/{feed_id}/runs"),
    ("get", "/v1/feeds/{feed_id}/runs"),
    ("get", "/v1/feeds/{feed_id}/runs/{run_id}"),
    ("post", "/v1/feeds/{feed_id}/runs/{run_id}/approve"),
    ("post", "/v1/feeds/{feed_id}/runs/{run_id}/reject"),
    ("post", "/v1/validate/feed"),
    ("get", "/v1/catalog/assets"),
    ("get", "/v1/catalog/changes"),
}


async def test_openapi_describes_every_call_with_its_problems(ingest: Client) -> None:
    response = await ingest.get("/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    described = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert described == CALLS
    schemas = document["components"]["schemas"]
    assert {"Asset", "AssetPatch", "ProblemDocument", "AssetBatchAnswer"} <= set(schemas)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/v1/schema/asset.json":
                assert operation["security"] == []
                continue
            # The catalogue is read with reader tokens only; everything else with a provider's.
            reader = path.startswith("/v1/catalog/")
            expected = [{"reader": []}] if reader else [{"basic": []}, {"bearer": []}]
            assert operation["security"] == expected, (method, path)
            answers = operation["responses"]
            assert {"401", "429"} <= set(answers), (method, path)
            assert answers["429"]["headers"]["Retry-After"]
            problem_body = answers["401"]["content"]["application/problem+json"]["schema"]
            assert problem_body == {"$ref": "#/components/schemas/ProblemDocument"}
            if method != "get":
                assert {"415", "413", "400", "503"} <= set(answers), (method, path)
    patch = document["paths"]["/v1/assets/{id}"]["patch"]["requestBody"]["content"]
    assert "application/merge-patch+json" in patch
    feed_body = document["paths"]["/v1/validate/feed"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson", "text/csv", "application/gzip"} <= set(
        feed_body
    )
    assert "410" in document["paths"]["/v1/catalog/changes"]["get"]["responses"]
    assert document["components"]["securitySchemes"]["reader"]["scheme"] == "bearer"
    # A batch is accepted whatever its items hold (a bad one is rejected alone in `results`): the
    # document must not promise a 4xx for it.
    for envelope, key in (("AssetBatch", "assets"), ("PriceBatch", "prices")):
        items = schemas[envelope]["properties"][key]["items"]
        assert items["anyOf"][1] == {}, items


async def test_the_document_accepts_what_the_api_accepts_and_reads_back(
    ingest: Client, provider: Provider
) -> None:
    """A client that validates with the published schemas accepts what the API accepts and
    answers: a PUT body without `id` (the path's), integers as digit strings, a document read
    back and sent again, and a receipt with its `trace_id`."""
    document = await (await ingest.get("/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    put_body = document["paths"]["/v1/assets/{id}"]["put"]["requestBody"]["content"]
    put_schema = {**put_body["application/json"]["schema"], "components": document["components"]}
    registry_root = {"components": document["components"]}

    def check(schema: dict[str, object], value: object) -> None:
        jsonschema.validate(value, {**schema, **registry_root})

    sent = house("oa-1", year_built="1924", token=TOKEN_AS_TEXT)
    del sent["id"]
    check(put_schema, sent)
    response = await ingest.put(
        "/v1/assets/oa-1", data=json.dumps(sent), headers={**JSON, **provider.basic}
    )
    assert response.status == 202
    accepted = await response.json()
    asset_schema = {"$ref": "#/components/schemas/Asset"}
    check(asset_schema, {**sent, "id": "oa-1"})

    answer = await ingest.get(f"/v1/events/{accepted['event_id']}", headers=provider.basic)
    receipt = await answer.json()
    assert receipt["trace_id"] and "trace_id" in schemas["Receipt"]["properties"]
    check({"$ref": "#/components/schemas/Receipt"}, receipt)
    # A document as GET returns it (normalised: `total_supply` as text, `_meta` added) may be
    # sent again as it is (no reconciler runs here: the normalised form is computed as it does).
    read_back = {
        **normalized_document(parse_asset({**sent, "id": "oa-1"})),
        "_meta": {"updated_at": "2025-05-30T13:15:00.000000Z", "content_hash": "00"},
    }
    assert read_back["token"]["total_supply"] == "1000"
    check(asset_schema, read_back)
    check(put_schema, read_back)


async def test_docs_page_and_its_assets_are_served_locally(ingest: Client) -> None:
    page = await ingest.get("/docs")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert "/v1/openapi.json" in html and "//" not in html.replace("://", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        response = await ingest.get(f"/docs/assets/{asset}")
        assert response.status == 200 and len(await response.read()) > 10_000
    # any other name, or the folder, is an ordinary problem+json 404
    for missing in ("/docs/assets/nonexistent.js", "/docs/assets/", "/docs/assets/%2E%2E"):
        response = await ingest.get(missing)
        assert response.status == 404, missing
        assert response.content_type == "application/problem+json", missing


async def test_validate_asset_reports_without_writing(
    ingest: Client, queues: Queues, provider: Provider, store: Database
) -> None:
    before = await store.fetchval("SELECT count(*) FROM event_receipts")
    response = await ingest.post(
        "/v1/validate/asset", data=json.dumps(house("v-1")), headers={**JSON, **provider.basic}
    )
    assert await response.json() == {"valid": True, "errors": []}
    response = await ingest.post(
        "/v1/validate/asset",
        data=json.dumps(house("v-1", status="bogus", name="")),
        headers={**JSON, **provider.basic},
    )
    report = await response.json()
    assert response.status == 200 and report["valid"] is False
    assert {e["pointer"] for e in report["errors"]} == {"/status", "/name"}

    batch = {"assets": [house("v-1"), {"id": "v-2"}]}
    response = await ingest.post(
        "/v1/validate/batch", data=json.dumps(batch), headers={**JSON, **provider.bearer}
    )
    report = await response.json()
    assert report["valid"] is False
    assert [(r["index"], r["id"], r["valid"]) for r in report["results"]] == [
        (0, "v-1", True),
        (1, "v-2", False),
    ]
    assert {e["pointer"] for e in report["results"][1]["errors"]} == {
        "/updated_at",
        "/status",
        "/name",
    }
    response = await ingest.post(
        "/v1/validate/batch", data=json.dumps({"assets": 1}), headers={**JSON, **provider.bearer}
    )
    await problem(response, 422)
    await problem(
        await ingest.post("/v1/validate/asset", data=b"{", headers={**JSON, **provider.basic}), 400
    )
    assert await queues.depth(queues.assets) == 0
    assert await store.fetchval("SELECT count(*) FROM event_receipts") == before
