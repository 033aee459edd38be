"""The provider API end to end through the real services (reconciler and pricing applying):
deletions as tombstones under the version guard, a batch applied in full, a price batch, the
listing, and credentials issued, rotated and revoked with the operator CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_flows import bearer, get_asset, put_asset, receipt
from tests.support.events import asset_doc
from tests.support.system import System
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_deletion_is_a_tombstone_that_an_older_upsert_never_resurrects(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    ingest = system.url("ingest-api")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    # An unknown id becomes a tombstone.
    status, deleted = await call(
        http,
        "DELETE",
        f"{ingest}/v1/assets/gone-1",
        bearer(provider),
        {"reason": "sold", "deleted_at": stamp(t)},
    )
    assert status == 202
    assert (await receipt(http, system, provider, deleted["event_id"]))["status"] == "applied"
    status, _ = await get_asset(http, system, provider, "gone-1")
    assert status == 404
    async with http.get(
        f"{ingest}/v1/assets/gone-1?include_deleted=true", headers=bearer(provider)
    ) as response:
        tombstone = await response.json()
    assert tombstone["id"] == "gone-1" and tombstone["_meta"]["deleted"] is True

    # A later-arriving older upsert stays out; at equal updated_at the deletion wins.
    for updated_at in (t - timedelta(minutes=5), t):
        late = await put_asset(http, system, provider, asset_doc("gone-1", updated_at))
        decided = await receipt(http, system, provider, late["event_id"])
        assert decided["status"] == "stale_ignored"
    assert (await get_asset(http, system, provider, "gone-1"))[0] == 404

    # A newer upsert re-creates it.
    again = await put_asset(http, system, provider, asset_doc("gone-1", t + timedelta(minutes=1)))
    assert (await receipt(http, system, provider, again["event_id"]))["status"] == "applied"
    assert (await get_asset(http, system, provider, "gone-1"))[0] == 200


async def test_a_batch_is_applied_in_full_and_listed(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    ingest = system.url("ingest-api")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    assets = [
        asset_doc(f"batch-{n:04d}", t, status="active" if n % 3 else "sold") for n in range(1200)
    ]
    status, answer = await call(
        http, "POST", f"{ingest}/v1/assets/batch", bearer(provider), {"assets": assets}
    )
    assert status == 202 and answer["accepted"] == 1200

    async def listed() -> list[str]:
        ids: list[str] = []
        cursor = ""
        while True:
            status, page = await call(
                http, "GET", f"{ingest}/v1/assets?limit=500{cursor}", bearer(provider)
            )
            assert status == 200, page
            ids += [item["id"] for item in page["items"]]
            if page["next_cursor"] is None:
                return ids
            cursor = f"&cursor={page['next_cursor']}"

    ids = await eventually(listed, lambda ids: len(ids) == 1200, timeout=60, what="batch applied")
    assert ids == sorted(a["id"] for a in assets)
    last = answer["results"][-1]["event_id"]
    assert (await receipt(http, system, provider, last))["status"] == "applied"
    status, sold = await call(
        http, "GET", f"{ingest}/v1/assets?status=sold&limit=500", bearer(provider)
    )
    assert len(sold["items"]) == 400


async def test_a_price_batch_reaches_investors(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str], reader: dict[str, str]
) -> None:
    ingest, pricing = system.url("ingest-api"), system.url("pricing")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    ticks = [
        {
            "asset_id": f"px-{n % 5}",
            "amount": str(100 + n),
            "currency": "USD",
            "as_of": stamp(t + timedelta(seconds=n)),
        }
        for n in range(50)
    ]
    status, answer = await call(
        http, "POST", f"{ingest}/v1/prices", bearer(provider), {"prices": ticks}
    )
    assert status == 202 and answer["accepted"] == 50

    async def latest() -> tuple[int, Any]:
        return await call(
            http, "GET", f"{pricing}/v1/prices/{provider['provider_id']}/px-4", bearer(reader)
        )

    status, price = await eventually(latest, lambda r: r[0] == 200 and r[1]["amount"] == "149")
    assert price["as_of"].startswith(stamp(t + timedelta(seconds=49))[:19])


async def test_credentials_rotate_with_overlap_and_revoke(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    ingest = system.url("ingest-api")
    _, rotated = system.cli("credential", "rotate", provider["key_id"], "--json")
    assert rotated["provider_id"] == provider["provider_id"]
    assert rotated["replaces"] == provider["key_id"] and rotated["old_revoked_at"] is None
    # Both work during the overlap.
    for credentials in (provider, rotated):
        assert (await call(http, "GET", f"{ingest}/v1/assets", bearer(credentials)))[0] == 200
    _, listed = system.cli("credential", "list", provider["provider_id"], "--json")
    assert {item["key_id"] for item in listed["items"]} == {provider["key_id"], rotated["key_id"]}

    system.cli("credential", "revoke", provider["key_id"], "--json")

    async def old_status() -> int:
        return (await call(http, "GET", f"{ingest}/v1/assets", bearer(provider)))[0]

    # The authenticator's cache lets a revocation take up to 5 s to bite.
    await eventually(old_status, lambda status: status == 401, timeout=20)
    assert (await call(http, "GET", f"{ingest}/v1/assets", bearer(rotated)))[0] == 200
    code, _ = system.cli("credential", "revoke", "key_unknown", check=False)
    assert code == 1


async def test_a_partner_made_with_the_cli_acts_for_its_providers(
    system: System, http: aiohttp.ClientSession, provider: dict[str, str]
) -> None:
    ingest = system.url("ingest-api")
    _, other = system.cli("provider", "create", "Other Estates", "--json")
    _, partner = system.cli(
        "partner", "create", "Reach", "--provider", provider["provider_id"], "--json"
    )
    system.cli("partner", "grant", partner["partner_id"], other["provider_id"], "--json")
    for owner in (provider, other):
        doc = asset_doc("via-partner", datetime.now(UTC) - timedelta(minutes=1))
        status, accepted = await call(
            http,
            "PUT",
            f"{ingest}/v1/assets/via-partner",
            {**bearer(partner), "X-Tenant-Id": owner["provider_id"]},
            doc,
        )
        assert status == 202, accepted
        # Applied as the named provider's own asset.
        await eventually(
            lambda owner=owner: get_asset(http, system, owner, "via-partner"),
            lambda found: found[0] == 200,
        )
    status, _ = await call(http, "GET", f"{ingest}/v1/assets", bearer(partner))
    assert status == 400  # a partner must name the provider
