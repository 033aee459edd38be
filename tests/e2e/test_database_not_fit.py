"""A database that is there but not fit to work for a while is an outage, not bad input (found by
a push trial). Two such states: it refuses new connections (`ALTER DATABASE … ALLOW_CONNECTIONS
false`, as maintenance tools do: SQLSTATE 55000), or it is read-only (a primary demoted to a
standby by a failover, or `default_transaction_read_only`: 25006). ingest-api answers `503` with
`Retry-After` (docs/api.md 1.3), never a 500; the consumers wait and apply what was accepted
meanwhile, never dead-letter it (4.2, "Dead letters"); and a service is not ready while its
database takes no writes. Before, ingest-api answered 500, both consumers dead-lettered the
accepted push and tick on their first delivery, and `/readyz` said ready throughout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
from yarl import URL

from tests.e2e.test_flows import bearer, get_asset, receipt
from tests.support.events import asset_doc
from tests.support.infra import Infra
from tests.support.system import System
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def _terminate_sessions(admin: asyncpg.Connection, database: str) -> None:
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
    )


@contextlib.asynccontextmanager
async def _database_altered(
    test_infra: Infra, system: System, setting: str, undo: str
) -> AsyncIterator[None]:
    """The system's database altered by `ALTER DATABASE … {setting}` (its sessions ended, so that
    new ones meet it) until the block ends, then `… {undo}` (and its sessions ended again)."""
    database = URL(system.database_url).path.lstrip("/")
    admin = await asyncpg.connect(test_infra.postgres_admin_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" {setting}')
        await _terminate_sessions(admin, database)
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" {undo}')
        await _terminate_sessions(admin, database)
        await admin.close()


def refusing_connections(
    test_infra: Infra, system: System
) -> contextlib.AbstractAsyncContextManager[None]:
    return _database_altered(
        test_infra, system, "ALLOW_CONNECTIONS false", "ALLOW_CONNECTIONS true"
    )


def read_only(test_infra: Infra, system: System) -> contextlib.AbstractAsyncContextManager[None]:
    return _database_altered(
        test_infra,
        system,
        "SET default_transaction_read_only = on",
        "RESET default_transaction_read_only",
    )


async def _warm(http: aiohttp.ClientSession, system: System, provider: dict[str, str]) -> None:
    """A first push, so that ingest-api has the credential cached when the database goes away."""
    warm = asset_doc("not-fit-warm", datetime.now(UTC) - timedelta(minutes=1))
    async with http.put(
        f"{system.url('ingest-api')}/v1/assets/{warm['id']}", json=warm, headers=bearer(provider)
    ) as response:
        assert response.status == 202
        warm_event = (await response.json())["event_id"]
    await receipt(http, system, provider, warm_event)


async def _put(
    http: aiohttp.ClientSession, url: str, body: Mapping[str, object], headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, object]]:
    async with http.put(url, json=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


async def test_ingest_answers_503_not_500_while_the_database_refuses_connections(
    system: System,
    test_infra: Infra,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
) -> None:
    await _warm(http, system, provider)
    keyed = asset_doc("refusing-keyed", datetime.now(UTC) - timedelta(minutes=1))
    async with refusing_connections(test_infra, system):
        # An Idempotency-Key needs its claim written: the database must answer.
        status, headers, body = await _put(
            http,
            f"{system.url('ingest-api')}/v1/assets/{keyed['id']}",
            keyed,
            {**bearer(provider), "Idempotency-Key": "refusing-keyed"},
        )
    assert (status, headers.get("Retry-After")) == (503, "1"), body
    assert headers["Content-Type"].startswith("application/problem+json")


async def test_a_push_accepted_while_the_database_refuses_connections_is_applied_after(
    system: System,
    test_infra: Infra,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
) -> None:
    await _warm(http, system, provider)
    doc = asset_doc("refusing-accepted", datetime.now(UTC) - timedelta(minutes=1))
    async with refusing_connections(test_infra, system):
        status, _, body = await _put(
            http, f"{system.url('ingest-api')}/v1/assets/{doc['id']}", doc, bearer(provider)
        )
        await asyncio.sleep(3)  # the reconciler meets the refusing database meanwhile
    assert status == 202, body  # the credential was cached: the broker confirmed the push
    decided = await receipt(http, system, provider, str(body["event_id"]))
    assert decided["status"] == "applied", decided
    assert (await get_asset(http, system, provider, doc["id"]))[0] == 200


async def _ready(http: aiohttp.ClientSession, system: System, service: str) -> int:
    async with http.get(f"{system.url(service)}/readyz") as response:
        return response.status


async def test_what_is_accepted_while_the_database_is_read_only_is_applied_after(
    system: System,
    test_infra: Infra,
    http: aiohttp.ClientSession,
    provider: dict[str, str],
) -> None:
    await _warm(http, system, provider)
    doc = asset_doc("read-only-accepted", datetime.now(UTC) - timedelta(minutes=1))
    tick = {"amount": "51.25", "currency": "USD", "as_of": datetime.now(UTC).isoformat()}
    async with read_only(test_infra, system):
        asset_status, _, asset_body = await _put(
            http, f"{system.url('ingest-api')}/v1/assets/{doc['id']}", doc, bearer(provider)
        )
        price_status, _, price_body = await _put(
            http,
            f"{system.url('ingest-api')}/v1/assets/{doc['id']}/price",
            tick,
            bearer(provider),
        )
        await asyncio.sleep(3)  # both consumers meet the read-only database meanwhile
        # A database that takes no writes leaves the services that write not ready.
        assert await _ready(http, system, "reconciler") == 503
        assert await _ready(http, system, "pricing") == 503
    assert (asset_status, price_status) == (202, 202), (asset_body, price_body)
    decided = await receipt(http, system, provider, str(asset_body["event_id"]))
    assert decided["status"] == "applied", decided
    priced = await receipt(http, system, provider, str(price_body["event_id"]))
    assert priced["status"] == "applied", priced
    assert (await get_asset(http, system, provider, doc["id"]))[0] == 200
    await eventually(lambda: _ready(http, system, "reconciler"), lambda s: s == 200, what="ready")
