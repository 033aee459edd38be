"""ingest-api forgets decided receipts after `RWASYNC_INGEST_RECEIPT_RETENTION_HOURS`: the running
service prunes them, and their `GET /v1/events/{id}` is a 404 from then on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from rwasync.ingest_api.app import create_app
from rwasync.platform.db import Database
from rwasync.schema.event_ids import event_id_at, new_event_id
from tests.integration.ingest.conftest import Provider, ingest_settings, serve
from tests.support.receipts import record
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_the_service_prunes_decided_receipts_past_the_retention(
    ingest: TestClient[web.Request, web.Application],
    ingest_database_url: str,
    ingest_amqp_url: str,
    store: Database,
    provider: Provider,
) -> None:
    old = datetime.now(UTC) - timedelta(hours=30)
    pruned = await record(store, provider.provider_id, event_id_at(old), old)
    undecided = await record(store, provider.provider_id, event_id_at(old), old, "accepted")
    recent = await record(store, provider.provider_id, new_event_id(), datetime.now(UTC))
    for event_id in (pruned, undecided, recent):
        response = await ingest.get(f"/v1/events/{event_id}", headers=provider.basic)
        assert response.status == 200

    # A second process with a day's retention: pruning starts with the service.
    pruning = await serve(
        create_app(
            ingest_settings(ingest_database_url, ingest_amqp_url, receipt_retention_hours=24)
        )
    )
    try:

        async def status_of_pruned() -> int:
            return (await ingest.get(f"/v1/events/{pruned}", headers=provider.basic)).status

        await eventually(status_of_pruned, lambda s: s == 404, timeout=30, what="receipt pruned")
        for event_id in (undecided, recent):
            response = await ingest.get(f"/v1/events/{event_id}", headers=provider.basic)
            assert response.status == 200
    finally:
        await pruning.close()


def test_receipts_are_kept_at_least_as_long_as_idempotency_keys() -> None:
    url, amqp = "postgresql://db/x", "amqp://mq/"
    with pytest.raises(
        pydantic.ValidationError, match="RWASYNC_INGEST_RECEIPT_RETENTION_HOURS: must be 0"
    ):
        ingest_settings(url, amqp, receipt_retention_hours=12)
    with pytest.raises(
        pydantic.ValidationError, match="RWASYNC_INGEST_RECEIPT_RETENTION_HOURS: must be 0"
    ):
        ingest_settings(url, amqp, receipt_retention_hours=47, idempotency_retention_hours=48)
    assert ingest_settings(url, amqp, receipt_retention_hours=0).receipt_retention_hours == 0
    assert ingest_settings(url, amqp).receipt_retention_hours == 168
