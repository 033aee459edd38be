"""Broker messages are written with orjson from the models' fields: the JSON must be what
pydantic's serialiser writes, and decode back to the same events, for every kind of event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rwasync.schema.events import (
    AnyEvent,
    Arrival,
    EventSource,
    asset_deleted,
    asset_patched,
    asset_upserted,
    decode_message,
    encode_message,
    message_for,
    price_updated,
)

pytestmark = pytest.mark.unit

HASH = "0123456789abcdef" * 4
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.integers(-600, 600).map(lambda m: timezone(timedelta(minutes=m))),
)


def events_of_every_kind(
    document: dict[str, Any], moment: datetime, amount: Decimal
) -> list[AnyEvent]:
    arrival = Arrival("prv_x", EventSource.BATCH, moment, trace_id="t-1")
    return [
        asset_upserted(
            arrival,
            asset_id="a1",
            updated_at=moment,
            accepted_at=moment,
            document={**document, "id": "a1"},
            content_hash=HASH,
        ),
        asset_patched(
            arrival, asset_id="a1", updated_at=moment, accepted_at=moment, patch=document
        ),
        asset_deleted(arrival, asset_id="a1", updated_at=moment, accepted_at=moment),
        asset_deleted(arrival, asset_id="a2", updated_at=moment, accepted_at=moment, reason="sold"),
        price_updated(
            arrival, asset_id="a1", amount=amount, currency="EUR", as_of=moment, accepted_at=moment
        ),
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.text(), json_values, max_size=6),
    moments,
    st.decimals(allow_nan=False, allow_infinity=False, places=6),
)
def test_same_json_as_pydantic_and_the_same_events_back(
    document: dict[str, Any], moment: datetime, amount: Decimal
) -> None:
    events = events_of_every_kind(document, moment, amount)
    message = message_for(events)
    encoded = encode_message(message)
    # The standard library keeps integers beyond 64 bits exact, where orjson cannot.
    assert json.loads(encoded) == json.loads(message.model_dump_json())
    assert decode_message(encoded) == message


def test_byte_for_byte_what_pydantic_writes_for_a_typical_message() -> None:
    moment = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    document = {"name": "18900 Mansfield St", "price": {"amount": "52.1", "currency": "USD"}}
    events = events_of_every_kind(document, moment, Decimal("52.10"))
    message = message_for(events)
    assert encode_message(message) == orjson.dumps(message.model_dump(mode="json"))
    assert str(message.message_id) in encode_message(message).decode()
    assert uuid.UUID(orjson.loads(encode_message(message))["message_id"]) == message.message_id
