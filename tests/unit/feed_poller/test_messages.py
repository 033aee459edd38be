"""A feed run's events are built as plain dicts and encoded straight to JSON, without pydantic:
what the consumers decode must be exactly the events the schema's own constructors would make."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from rwasync.feed_poller.comparing import RowPayload
from rwasync.feed_poller.messages import (
    RunContext,
    deletion_event,
    price_event,
    upsert_event,
)
from rwasync.feeds.snapshot import Action, Decision, FeedRow
from rwasync.schema.asset import canonical_json
from rwasync.schema.events import Arrival, EventSource, asset_deleted, asset_upserted, price_updated
from rwasync.schema.messages import decode_message, encode_wire_events

pytestmark = pytest.mark.unit

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RUN = RunContext("feed_1", "run_1", AT, Arrival("prv_1", EventSource.FEED, AT, "run_1"))
DOCUMENT = {
    "id": "a-1",
    "updated_at": "2026-04-01T00:00:00.000000Z",
    "status": "active",
    "name": 'Name with "quotes", \\ and "document":{}',
    "price": {"amount": "66.21", "currency": "USD"},
    "attributes": {"rank": 12345678901234, "note": "é ✓"},
}


def _decision(action: Action, price_as_of: datetime | None) -> Decision:
    canonical = canonical_json(DOCUMENT)
    row = FeedRow(
        3,
        True,
        AT - timedelta(days=30),
        bytes(range(32)),
        RowPayload(canonical, (Decimal("66.2100"), "USD", price_as_of), None),
    )
    return Decision("a-1", action, row, AT - timedelta(days=30), str(uuid.uuid4()))


@pytest.mark.parametrize("price_as_of", [None, AT - timedelta(hours=1)])
def test_decoded_events_equal_the_schema_constructors(price_as_of: datetime | None) -> None:
    decision = _decision(Action.CREATE, price_as_of)
    upsert, _ = upsert_event(decision, RUN)
    price = price_event(decision, RUN)
    deletion = deletion_event(Decision("a-2", Action.DELETE), RUN)
    assert price is not None

    message_id, body = encode_wire_events([upsert, deletion])
    message = decode_message(body)
    assert str(message.message_id) == message_id
    decoded_upsert, decoded_deletion = message.events
    assert decoded_upsert == asset_upserted(
        RUN.arrival,
        asset_id="a-1",
        updated_at=AT - timedelta(days=30),
        accepted_at=AT,
        document=orjson.loads(canonical_json(DOCUMENT)),
        content_hash=bytes(range(32)).hex(),
        event_id=uuid.UUID(decision.event_id),
    )
    assert decoded_deletion == asset_deleted(
        RUN.arrival,
        asset_id="a-2",
        updated_at=AT,
        accepted_at=AT,
        reason="missing from feed feed_1 run run_1",
    ).model_copy(update={"event_id": uuid.UUID(deletion["event_id"])})

    message_id, body = encode_wire_events([price])
    (decoded_price,) = decode_message(body).events
    assert message_id == str(price["event_id"])
    assert decoded_price == price_updated(
        RUN.arrival,
        asset_id="a-1",
        amount=Decimal("66.2100"),
        currency="USD",
        as_of=price_as_of or AT,
        accepted_at=AT,
    ).model_copy(update={"event_id": uuid.UUID(price["event_id"])})


def test_the_document_goes_out_as_the_bytes_that_were_hashed() -> None:
    upsert, size = upsert_event(_decision(Action.UPDATE, None), RUN)
    _, body = encode_wire_events([upsert, upsert])
    assert body.count(b'"document":' + canonical_json(DOCUMENT) + b',"content_hash"') == 2
    assert size == len(canonical_json(DOCUMENT))
