"""The investor price API in-process against real Postgres: reader tokens only, 404s, the stale
flag computed at read time from the provider's freshness window, ETag and 304."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rwasync.platform.db import Database
from rwasync.pricing.api import Candles, LatestPrice, LatestPrices, PriceHistory
from rwasync.pricing.app import create_app
from rwasync.pricing.apply import PriceApplier
from rwasync.pricing.settings import PricingSettings
from rwasync.store.tenants import digest, issue_reader_token
from tests.support.events import price
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]

TOKEN = issue_reader_token()


@pytest.fixture
async def client(db: Database, database_url: str, provider_id: str) -> AsyncIterator[Client]:
    await db.execute(
        "INSERT INTO readers (reader_id, name, token_digest) VALUES ('rdr_1', 'Portal', $1)",
        digest(TOKEN),
    )
    # The consumer side is not under test here: its broker address is a closed port.
    settings = PricingSettings.model_validate(
        {
            "RWASYNC_DATABASE_URL": database_url,
            "RWASYNC_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        }
    )
    test_client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await test_client.start_server()

    async def database_ready() -> bool:
        body = await (await test_client.get("/readyz")).json()
        return bool(body["checks"]["database"])

    # The pool connects in the background; until then reads are (rightly) 503.
    await eventually(database_ready, bool, what="pricing connected to its database")
    yield test_client
    await test_client.close()


def reader() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_reader_tokens_only(client: Client, provider_id: str) -> None:
    for headers in ({}, {"Authorization": "Bearer rwr_unknown"}, {"Authorization": "Basic eDp5"}):
        response = await client.get(f"/v1/prices/{provider_id}/a1", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.content_type == "application/problem+json"


async def test_unknown_provider_or_no_price_is_404(
    client: Client,
    db: Database,
    provider_id: str,
) -> None:
    await PriceApplier(db).apply([price(provider_id, "a1", "50", datetime.now(UTC))])
    # The same words as /v1/prices and the stream for a provider, the asset's for an asset, on
    # the latest price, its history and its candles alike.
    for tail in ("", "/history", "/ohlc?interval=1h"):
        nobody = await client.get(f"/v1/prices/prv_nobody/a1{tail}", headers=reader())
        assert nobody.status == 404, tail
        assert (await nobody.json())["detail"] == "unknown provider 'prv_nobody'", tail
        unpriced = await client.get(f"/v1/prices/{provider_id}/a2{tail}", headers=reader())
        assert unpriced.status == 404, tail
        detail = (await unpriced.json())["detail"]
        assert detail == f"no accepted price for asset 'a2' of {provider_id!r}", tail
        known = await client.get(f"/v1/prices/{provider_id}/a1{tail}", headers=reader())
        assert known.status == 200, tail
    await db.execute("UPDATE providers SET disabled = true WHERE provider_id = $1", provider_id)
    for tail in ("", "/history", "/ohlc?interval=1h"):
        disabled = await client.get(f"/v1/prices/{provider_id}/a1{tail}", headers=reader())
        assert disabled.status == 404, tail
        assert (await disabled.json())["detail"] == f"unknown provider {provider_id!r}", tail


async def test_stale_follows_the_providers_freshness_window(
    client: Client,
    db: Database,
    provider_id: str,
) -> None:
    now = datetime.now(UTC)
    await PriceApplier(db).apply(
        [
            price(provider_id, "fresh", "50.10", now - timedelta(hours=1)),
            price(provider_id, "old", "49.90", now - timedelta(hours=25)),
        ]
    )
    fresh = await (await client.get(f"/v1/prices/{provider_id}/fresh", headers=reader())).json()
    old = await (await client.get(f"/v1/prices/{provider_id}/old", headers=reader())).json()
    assert (fresh["stale"], old["stale"]) == (False, True)
    assert fresh["amount"] == "50.1" and fresh["currency"] == "USD"

    await db.execute(
        "UPDATE providers SET price_freshness = interval '30 minutes' WHERE provider_id = $1",
        provider_id,
    )
    fresh = await (await client.get(f"/v1/prices/{provider_id}/fresh", headers=reader())).json()
    assert fresh["stale"] is True


async def test_etag_gives_304_until_the_price_moves(
    client: Client,
    db: Database,
    provider_id: str,
) -> None:
    applier = PriceApplier(db)
    now = datetime.now(UTC)
    await applier.apply([price(provider_id, "a1", "50", now - timedelta(minutes=2))])
    first = await client.get(f"/v1/prices/{provider_id}/a1", headers=reader())
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, max-age=5"
    again = await client.get(
        f"/v1/prices/{provider_id}/a1", headers={**reader(), "If-None-Match": etag}
    )
    assert again.status == 304
    await applier.apply([price(provider_id, "a1", "51", now - timedelta(minutes=1))])
    moved = await client.get(
        f"/v1/prices/{provider_id}/a1", headers={**reader(), "If-None-Match": etag}
    )
    assert moved.status == 200 and (await moved.json())["amount"] == "51"


async def test_openapi_describes_every_read_and_the_stream_with_their_problems(
    client: Client,
) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/v1/prices",
        "/v1/prices/stream",
        "/v1/prices/{provider_id}/{asset_id}",
        "/v1/prices/{provider_id}/{asset_id}/history",
        "/v1/prices/{provider_id}/{asset_id}/ohlc",
    }
    assert document["components"]["securitySchemes"]["reader"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        operation = operations["get"]
        assert operation["security"] == [{"reader": []}]
        assert {"400", "401", "404", "429", "503"} <= set(operation["responses"]), path
        problem = operation["responses"]["400"]["content"]["application/problem+json"]
        assert problem["schema"] == {"$ref": "#/components/schemas/ProblemDocument"}
    history = document["paths"]["/v1/prices/{provider_id}/{asset_id}/history"]["get"]
    limit = next(p for p in history["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    stream = document["paths"]["/v1/prices/stream"]["get"]["responses"]["200"]
    assert "text/event-stream" in stream["content"]
    assert (await client.get("/docs")).status == 200


async def test_answers_validate_against_the_documented_models(
    client: Client, db: Database, provider_id: str
) -> None:
    await PriceApplier(db).apply([price(provider_id, "a1", "50.10", datetime.now(UTC))])
    base = f"/v1/prices/{provider_id}/a1"
    latest = await client.get(base, headers=reader())
    LatestPrice.model_validate(await latest.json())
    many = await client.get(
        f"/v1/prices?provider_id={provider_id}&asset_id=a1,a9", headers=reader()
    )
    LatestPrices.model_validate(await many.json())
    PriceHistory.model_validate(
        await (await client.get(base + "/history", headers=reader())).json()
    )
    candles = await client.get(base + "/ohlc?interval=1h", headers=reader())
    Candles.model_validate(await candles.json())
    head = await client.head(base, headers=reader())
    assert head.status == 200 and head.headers["ETag"] == latest.headers["ETag"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=%C2%B2", "limit"),  # "²": str.isdigit() holds, int() refuses it
        ("limit=" + "9" * 5000, "limit"),
        ("to=0001-01-01T00:00:00%2B01:00", "to"),  # no UTC instant
        ("to=0001-01-02T00:00:00Z", "to"),  # no room for the default 30 days before it
        # a '+' offset sent unescaped: still said so
        ("from=2026-07-23T08:42:26 01:00", "from"),
        ("cursor=MDAwMS0wMS0wMVQwMDowMDowMCswMTowMA==", "cursor"),  # 0001-01-01T00:00+01:00
    ],
)
async def test_hostile_query_parameters_are_400_naming_them(
    client: Client, db: Database, provider_id: str, query: str, parameter: str
) -> None:
    await PriceApplier(db).apply([price(provider_id, "a1", "50", datetime.now(UTC))])
    response = await client.get(f"/v1/prices/{provider_id}/a1/history?{query}", headers=reader())
    assert response.status == 400, await response.text()
    assert (await response.json())["errors"][0]["parameter"] == parameter


@pytest.mark.parametrize(
    "path",
    [
        "/v1/prices/prv%00x/a1",
        "/v1/prices/prv_x/a%00",
        "/v1/prices/prv%00x/a1/history",
        "/v1/prices?provider_id=prv%00x&asset_id=a1",
        "/v1/prices/stream?provider_id=prv%00x",
    ],
)
async def test_ids_no_provider_can_have_are_404_not_a_database_error(
    client: Client, path: str
) -> None:
    response = await client.get(path, headers=reader())
    assert response.status == 404, await response.text()
