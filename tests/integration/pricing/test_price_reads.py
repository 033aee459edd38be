"""Investor reads beyond one latest price: many at once with `missing`, history pages, OHLC
candles computed in SQL, parameters checked with 400s naming them, ETag and 304 on each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from multidict import CIMultiDict

from rwasync.platform.db import Database
from rwasync.pricing.apply import PriceApplier
from rwasync.pricing.params import MAX_ASSET_ID_LENGTH, MAX_ASSET_IDS
from tests.integration.pricing.conftest import Client, reader_headers
from tests.support.events import price

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


@pytest.fixture
async def client(pricing: Any, db: Database, provider_id: str) -> Client:
    applier = PriceApplier(db)
    ticks = [
        ("a1", "10", hours_ago(3.5)),
        ("a1", "12", hours_ago(3.25)),
        ("a1", "9", hours_ago(3.1)),
        ("a1", "11", hours_ago(2.5)),
        ("a1", "20", hours_ago(0.5)),
        ("a2", "5", hours_ago(1)),
    ]
    await applier.apply([price(provider_id, a, amount, as_of) for a, amount, as_of in ticks])
    started: Client = await pricing()
    return started


async def get(client: Client, path: str, status: int = 200, **headers: str) -> Any:
    response = await client.get(path, headers={**reader_headers(), **headers})
    assert response.status == status, await response.text()
    return await response.json() if status != 304 else None


async def test_many_at_once_in_request_order_with_missing(client: Client, provider_id: str) -> None:
    body = await get(client, f"/v1/prices?provider_id={provider_id}&asset_id=a2,nope,a1,a2")
    assert [(i["asset_id"], i["amount"]) for i in body["items"]] == [("a2", "5"), ("a1", "20")]
    assert body["missing"] == ["nope"]
    await get(client, "/v1/prices?provider_id=prv_nobody&asset_id=a1", 404)


async def test_a_repeated_asset_id_counts_like_a_comma(client: Client, provider_id: str) -> None:
    """`asset_id=a&asset_id=b` is every id, not the first one alone (the rest used to vanish
    from both `items` and `missing`)."""
    path = f"/v1/prices?provider_id={provider_id}&asset_id=a2&asset_id=nope,a1&asset_id=a2"
    body = await get(client, path)
    assert [(i["asset_id"], i["amount"]) for i in body["items"]] == [("a2", "5"), ("a1", "20")]
    assert body["missing"] == ["nope"]
    # The same 500 and the same id rule over all of them together.
    too_many = "&".join(f"asset_id=x{i}" for i in range(501))
    refused = await get(client, f"/v1/prices?provider_id={provider_id}&{too_many}", 400)
    assert refused["errors"][0]["parameter"] == "asset_id"
    bad = await get(client, f"/v1/prices?provider_id={provider_id}&asset_id=a1&asset_id=", 400)
    assert bad["errors"][0]["parameter"] == "asset_id"
    # an id ending in a line break is no id (`$` matched before it)
    bad = await get(client, f"/v1/prices?provider_id={provider_id}&asset_id=a1%0A", 400)
    assert bad["errors"][0]["parameter"] == "asset_id"


async def test_500_ids_of_the_longest_length_fit_in_one_request(
    client: Client, provider_id: str
) -> None:
    """The documented 500 ids: aiohttp's 8190-byte request line used to refuse even 400 short
    ones. Both ways of listing them, commas escaped (as a client's URL encoder may) or repeated."""
    ids = [f"{i:03d}".ljust(MAX_ASSET_ID_LENGTH, "x") for i in range(MAX_ASSET_IDS - 1)] + ["a1"]
    for listed in ("asset_id=" + "%2C".join(ids), "&".join(f"asset_id={a}" for a in ids)):
        body = await get(client, f"/v1/prices?provider_id={provider_id}&{listed}")
        assert [i["asset_id"] for i in body["items"]] == ["a1"]
        assert len(body["missing"]) == MAX_ASSET_IDS - 1
    # Still a limit: a line far past it is refused before any handler, as problem+json.
    response = await client.get(
        f"/v1/prices?provider_id={provider_id}&asset_id={'x' * 200_000}", headers=reader_headers()
    )
    assert response.status == 400
    assert response.content_type == "application/problem+json"
    assert "request line is longer than" in (await response.json())["detail"]


async def test_history_pages_through_a_range(client: Client, provider_id: str) -> None:
    path = f"/v1/prices/{provider_id}/a1/history?limit=2"
    first = await get(client, path)
    assert [i["amount"] for i in first["items"]] == ["10", "12"]
    second = await get(client, f"{path}&cursor={first['next_cursor']}")
    assert [i["amount"] for i in second["items"]] == ["9", "11"]
    third = await get(client, f"{path}&cursor={second['next_cursor']}")
    assert [i["amount"] for i in third["items"]] == ["20"] and third["next_cursor"] is None
    start = (hours_ago(3.25)).isoformat().replace("+00:00", "Z")
    end = (hours_ago(2.5)).isoformat().replace("+00:00", "Z")
    ranged = await get(client, f"/v1/prices/{provider_id}/a1/history?from={start}&to={end}")
    assert [i["amount"] for i in ranged["items"]] == ["12", "9"]  # from inclusive, to exclusive
    assert set(ranged["items"][0]) == {"amount", "currency", "as_of", "received_at"}
    await get(client, f"/v1/prices/{provider_id}/zz/history", 404)


async def test_a_tick_dated_minutes_ahead_is_in_the_default_history_and_candles(
    client: Client, db: Database, provider_id: str
) -> None:
    """A tick may be dated up to 5 minutes ahead; as the latest price it was missing from the
    history and candles of the default range, which ended at now (investor trial)."""
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=3)
    await PriceApplier(db).apply([price(provider_id, "a3", "7", ahead)])
    latest = await get(client, f"/v1/prices/{provider_id}/a3")
    history = await get(client, f"/v1/prices/{provider_id}/a3/history")
    assert [i["as_of"] for i in history["items"]] == [latest["as_of"]]
    candles = await get(client, f"/v1/prices/{provider_id}/a3/ohlc?interval=1h")
    assert [c["close"] for c in candles["items"]] == ["7"]


async def test_hourly_and_daily_candles(client: Client, provider_id: str) -> None:
    hourly = await get(client, f"/v1/prices/{provider_id}/a1/ohlc?interval=1h")
    assert [
        (c["start"], c["open"], c["high"], c["low"], c["close"], c["count"])
        for c in hourly["items"]
    ] == [
        (hours_ago(4).strftime("%Y-%m-%dT%H:00:00.000000Z"), "10", "12", "9", "9", 3),
        (hours_ago(3).strftime("%Y-%m-%dT%H:00:00.000000Z"), "11", "11", "11", "11", 1),
        (hours_ago(1).strftime("%Y-%m-%dT%H:00:00.000000Z"), "20", "20", "20", "20", 1),
    ]
    daily = await get(client, f"/v1/prices/{provider_id}/a1/ohlc?interval=1d")
    assert sum(c["count"] for c in daily["items"]) == 5
    assert daily["items"][-1]["close"] == "20"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/prices", "provider_id"),
        ("/v1/prices?provider_id={p}", "asset_id"),
        (
            "/v1/prices?provider_id={p}&asset_id=" + ",".join(f"x{i}" for i in range(501)),
            "asset_id",
        ),
        ("/v1/prices?provider_id={p}&asset_id=a%20b", "asset_id"),
        ("/v1/prices/{p}/a1/history?from=yesterday", "from"),
        ("/v1/prices/{p}/a1/history?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("/v1/prices/{p}/a1/history?to=2026-01-01T00:00:00", "to"),
        # ISO 8601 forms that are not RFC 3339 (`datetime.fromisoformat` took them)
        ("/v1/prices/{p}/a1/history?from=2026-W30-4T08:42:26Z", "from"),
        ("/v1/prices/{p}/a1/history?from=20260723T084226Z", "from"),
        ("/v1/prices/{p}/a1/history?to=2026-07-23T08Z", "to"),
        ("/v1/prices/{p}/a1/ohlc?interval=1h&to=2026-07-23T08:42Z", "to"),
        ("/v1/prices/{p}/a1/ohlc?interval=1h&from=2026-07-23", "from"),
        ("/v1/prices/{p}/a1/history?limit=1001", "limit"),
        ("/v1/prices/{p}/a1/history?limit=0", "limit"),
        ("/v1/prices/{p}/a1/history?cursor=nonsense", "cursor"),
        ("/v1/prices/{p}/a1/ohlc", "interval"),
        ("/v1/prices/{p}/a1/ohlc?interval=5m", "interval"),
        ("/v1/prices/{p}/a1/ohlc?interval=1h&from=2000-01-01T00:00:00Z", "from"),
        # 5,000 hours, starting mid-hour: 5,001 candles (a part at each end)
        (
            "/v1/prices/{p}/a1/ohlc?interval=1h&from=2026-01-01T00:30:00Z&to=2026-07-28T08:30:00Z",
            "from",
        ),
    ],
)
async def test_bad_parameters_are_400s_naming_them(
    client: Client, provider_id: str, path: str, parameter: str
) -> None:
    body = await get(client, path.format(p=provider_id), 400)
    assert body["type"].endswith("/bad-query")
    assert body["errors"] == [{"parameter": parameter, "message": body["errors"][0]["message"]}]
    assert body["detail"].startswith(parameter)


async def test_every_read_answers_304_to_its_etag(client: Client, provider_id: str) -> None:
    for path in (
        f"/v1/prices/{provider_id}/a1",
        f"/v1/prices?provider_id={provider_id}&asset_id=a1,a2",
        f"/v1/prices/{provider_id}/a1/history",
        f"/v1/prices/{provider_id}/a1/ohlc?interval=1h",
    ):
        response = await client.get(path, headers=reader_headers())
        assert response.headers["Cache-Control"] == "private, max-age=5"
        etag = response.headers["ETag"]
        await get(client, path, 304, **{"If-None-Match": etag})
        # weak comparison, as RFC 9110 asks of If-None-Match: a proxy may have weakened the tag
        await get(client, path, 304, **{"If-None-Match": f'"other", W/{etag}'})
        await get(client, path, 200, **{"If-None-Match": '"something-else"'})
        # two field lines are one list (the second line's tag was ignored: security trial)
        lines = CIMultiDict([("If-None-Match", '"other"'), ("If-None-Match", etag)])
        lines.extend(reader_headers())
        response = await client.get(path, headers=lines)
        assert response.status == 304, await response.text()
