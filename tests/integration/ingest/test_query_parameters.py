"""Query parameters through the real ingest-api: every call takes only the parameters
`/v1/openapi.json` declares for it, each once. A misspelt one used to be ignored (the change feed
read `?cursor=` as no cursor at all and started again from its oldest entry) and a repeated one
was read as its first value; both are now a 400 naming the parameter (docs/api.md 1.3). The health
routes, the metrics and the API's description take any query."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rwasync.platform.db import Database
from tests.integration.ingest.conftest import Provider
from tests.integration.ingest.helpers import Client, create_reader, problem

pytestmark = pytest.mark.integration

# A value for each path parameter, so that every declared path can be called.
PATH_VALUES = {
    "id": "q-1",
    "event_id": "0194b2a0-0000-7000-8000-000000000000",
    "feed_id": "feed-q",
    "run_id": "run_q",
}


def operations(document: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(method, path with its parameters filled in, query parameter names) of every call."""
    found = []
    for template, methods in document["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], template)
        for method, spec in methods.items():
            names = [p["name"] for p in spec.get("parameters", []) if p["in"] == "query"]
            found.append((method.upper(), path, names))
    return found


async def test_the_change_feed_refuses_cursor_for_since(ingest: Client, store: Database) -> None:
    reader = await create_reader(store)
    response = await ingest.get("/v1/catalog/changes?cursor=c1.NTU0MDEuMTI", headers=reader)
    body = await problem(response, 400)
    assert body["type"].endswith("/bad-query")
    message = "unknown query parameter (this call takes: since, limit)"
    assert body["detail"] == f"cursor: {message}"
    assert body["errors"] == [{"parameter": "cursor", "message": message}]
    response = await ingest.get("/v1/catalog/changes?limit=1&limit=2", headers=reader)
    body = await problem(response, 400)
    assert body["type"].endswith("/bad-query")
    assert body["detail"] == "limit: is given more than once"
    assert body["errors"] == [{"parameter": "limit", "message": "is given more than once"}]


async def test_every_call_refuses_a_parameter_it_does_not_take_or_one_given_twice(
    ingest: Client, provider: Provider
) -> None:
    document = await (await ingest.get("/v1/openapi.json")).json()
    calls = operations(document)
    assert len(calls) >= 23
    for method, path, names in calls:
        taken = f"this call takes: {', '.join(names)}" if names else "this call takes none"
        unknown = [{"parameter": "typo", "message": f"unknown query parameter ({taken})"}]
        for query in ("typo=1", f"{'&'.join(f'{n}=' for n in names)}&typo=1".lstrip("&")):
            response = await ingest.request(method, f"{path}?{query}", headers=provider.bearer)
            body = await problem(response, 400)
            assert body["type"].endswith("/bad-query"), (method, path, body)
            assert body["errors"] == unknown, (method, path, body)
            assert "X-Trace-Id" in response.headers
        for name in names:
            response = await ingest.request(
                method, f"{path}?{name}=&{name}=", headers=provider.bearer
            )
            body = await problem(response, 400)
            assert body["errors"] == [{"parameter": name, "message": "is given more than once"}], (
                method,
                path,
                body,
            )


async def test_health_metrics_and_the_description_take_any_query(ingest: Client) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/docs"):
        response = await ingest.get(f"{path}?anything=1&anything=2&_=123")
        assert response.status == 200, (path, await response.text())


async def test_a_documented_query_is_still_read(ingest: Client, provider: Provider) -> None:
    response = await ingest.get(
        "/v1/assets?limit=2&status=active&include_deleted=true&updated_since=2026-01-01T00:00:00Z",
        headers=provider.bearer,
    )
    assert response.status == 200, await response.text()
