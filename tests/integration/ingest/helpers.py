"""Requests and answers as the ingest-api integration tests make and check them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from rwasync.platform.db import Database
from rwasync.schema.asset import content_hash
from rwasync.store.tenants import digest, issue_reader_token, new_id

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}
NOWHERE_AMQP = "amqp://guest:guest@127.0.0.1:1/"
NOWHERE_POSTGRES = "postgresql://postgres@127.0.0.1:1/nowhere"


def house(asset_id: str, **extra: Any) -> dict[str, Any]:
    """A Detroit house as a provider sends it: local offset, xdai, lowercase address, `54.20`."""
    return {
        "id": asset_id,
        "updated_at": "2025-05-30T09:15:00-04:00",
        "status": "active",
        "name": "2417 Van Dyke Street, Detroit",
        "token": {
            "symbol": "REALTOKEN-S-2417-VAN-DYKE-ST",
            "chain": "xdai",
            "contract_address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "total_supply": 10000,
            "decimals": 18,
        },
        "price": {"amount": "54.20", "currency": "usd"},
        **extra,
    }


async def put_json(client: Client, path: str, body: Any, headers: dict[str, str]) -> ClientResponse:
    return await client.put(path, data=json.dumps(body), headers={**JSON, **headers})


async def problem(response: ClientResponse, status: int) -> dict[str, Any]:
    """The body of an RFC 9457 answer with this status (asserting it is one)."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/problem+json", text
    body: dict[str, Any] = json.loads(text)
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    # The status line says what the title says (a 422 is "Unprocessable Content" in both).
    assert response.reason == body["title"], (response.reason, body["title"])
    return body


async def create_reader(store: Database) -> dict[str, str]:
    """A reader token's Authorization header (the portal's catalogue reads)."""
    token = issue_reader_token()
    await store.execute(
        "INSERT INTO readers (reader_id, name, token_digest) VALUES ($1, 'Portal', $2)",
        new_id("rdr"),
        digest(token),
    )
    return {"Authorization": f"Bearer {token}"}


def pointers(body: dict[str, Any]) -> set[str]:
    return {error["pointer"] for error in body["errors"]}


async def accepted_event_id(response: ClientResponse) -> uuid.UUID:
    text = await response.text()
    assert response.status == 202, text
    body = json.loads(text)
    assert body["status"] == "accepted" and set(body) == {"event_id", "status"}
    assert response.headers["Location"] == f"/v1/events/{body['event_id']}"
    return uuid.UUID(body["event_id"])


async def store_asset(
    store: Database,
    provider_id: str,
    asset_id: str,
    *,
    document: dict[str, Any] | None,
    updated_at: datetime,
    deleted: bool = False,
) -> datetime:
    """Write an asset row as the reconciler would; returns its applied_at."""
    applied_at = datetime(2025, 6, 1, 8, 30, 0, 123456, tzinfo=UTC)
    await store.execute(
        """INSERT INTO assets (provider_id, asset_id, updated_at, deleted, accepted_at, event_id,
                               source, document, content_hash, status, applied_at, deleted_at)
           VALUES ($1, $2, $3, $4, $3, $5, 'push', $6, $7, $8, $9, $10)""",
        provider_id,
        asset_id,
        updated_at,
        deleted,
        uuid.uuid4(),
        document,
        content_hash(document) if document is not None else None,
        document["status"] if document is not None else None,
        applied_at,
        updated_at if deleted else None,
    )
    return applied_at
