"""Query parameters through the real pricing service: every read and the stream take only the
parameters `/v1/openapi.json` declares for them, each once, except `asset_id`, documented as
repeatable (every value counts); a misspelt or repeated one is a 400 naming it (docs/api.md 1.3),
no longer ignored or read as its first value. The stream's `access_token` is one of its declared
parameters; the health routes, the metrics, the description and the demo page take any query."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.pricing.conftest import Client, reader_headers
from tests.integration.pricing.test_stream import Start, subscribe

pytestmark = pytest.mark.integration


def operations(document: dict[str, Any], provider_id: str) -> list[tuple[str, list[str]]]:
    """(path with its parameters filled in, query parameter names) of every call (all GETs)."""
    values = {"provider_id": provider_id, "asset_id": "a1"}
    found = []
    for template, methods in document["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        for spec in methods.values():
            found.append((path, [p["name"] for p in spec["parameters"] if p["in"] == "query"]))
    return found


async def bad_query(client: Client, path: str) -> dict[str, Any]:
    response = await client.get(path, headers=reader_headers())
    assert response.status == 400, (path, await response.text())
    assert response.content_type == "application/problem+json"
    assert "X-Trace-Id" in response.headers
    body: dict[str, Any] = await response.json()
    assert body["type"].endswith("/bad-query"), body
    assert body["detail"] == f"{body['errors'][0]['parameter']}: {body['errors'][0]['message']}"
    return body


async def test_every_call_refuses_a_parameter_it_does_not_take_or_one_given_twice(
    pricing: Start, provider_id: str
) -> None:
    client = await pricing()
    document = await (await client.get("/v1/openapi.json")).json()
    calls = operations(document, provider_id)
    assert len(calls) == 5
    for path, names in calls:
        taken = f"this call takes: {', '.join(names)}" if names else "this call takes none"
        unknown = [{"parameter": "typo", "message": f"unknown query parameter ({taken})"}]
        for query in ("typo=1", "".join(f"{name}=&" for name in names) + "typo=1"):
            body = await bad_query(client, f"{path}?{query}")
            assert body["errors"] == unknown, (path, body)
        for name in names:
            if name == "asset_id":
                continue
            body = await bad_query(client, f"{path}?{name}=x&{name}=y")
            assert body["errors"] == [{"parameter": name, "message": "is given more than once"}]


async def test_the_history_refuses_a_second_limit_and_a_misspelt_cursor(
    pricing: Start, provider_id: str
) -> None:
    client = await pricing()
    history = f"/v1/prices/{provider_id}/a1/history"
    body = await bad_query(client, f"{history}?limit=1&limit=2")
    assert body["errors"] == [{"parameter": "limit", "message": "is given more than once"}]
    empty = "must not be empty: leave the parameter out instead"
    for path in (history, f"/v1/prices/{provider_id}/a1/ohlc"):
        names = ("cursor", "from", "to", "limit") if path == history else ("from", "to")
        for name in names:
            # an empty one is refused, never read as its default (a range of 30 days, 500 items)
            interval = "" if path == history else "interval=1d&"
            body = await bad_query(client, f"{path}?{interval}{name}=")
            assert body["errors"] == [{"parameter": name, "message": empty}], (path, name)
    body = await bad_query(client, f"{history}?next_cursor=abc")
    assert body["detail"] == (
        "next_cursor: unknown query parameter (this call takes: from, to, cursor, limit)"
    )


async def test_a_repeated_asset_id_and_the_streams_access_token_are_still_taken(
    pricing: Start, provider_id: str
) -> None:
    client = await pricing()
    query = f"provider_id={provider_id}&asset_id=a1&asset_id=a2"
    response = await client.get(f"/v1/prices?{query}", headers=reader_headers())
    assert response.status == 200, await response.text()
    assert (await response.json())["missing"] == ["a1", "a2"]
    token = reader_headers()["Authorization"].removeprefix("Bearer ")
    async with subscribe(client, f"{query}&access_token={token}", headers={}):
        pass  # a 200 event stream (`subscribe` checks it)


async def test_health_metrics_docs_and_the_demo_page_take_any_query(pricing: Start) -> None:
    client = await pricing()
    for path in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/docs"):
        response = await client.get(f"{path}?anything=1&anything=2&_=123")
        assert response.status == 200, (path, await response.text())
    response = await client.get("/demo/prices.html?provider_id=x&provider_id=y&_=1")
    assert response.status == 200
