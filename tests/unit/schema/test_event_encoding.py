"""Broker messages are written with orjson from the models' fields (or, for ingest-api's prices
and asset upserts, from the validated values without models): the JSON must be what pydantic's
serialiser writes, and decode back to the same events, for every kind of event."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rwasync.schema.event_ids import (
    event_id_drawer,
    first_event_id_at,
    new_event_id,
    new_event_ids,
)
from rwasync.schema.events import (
    AnyEvent,
    Arrival,
    EventMessage,
    EventSource,
    asset_deleted,
    asset_patched,
    asset_upserted,
    price_updated,
)
from rwasync.schema.messages import (
    asset_upserted_wire,
    decode_message,
    encode_message,
    encode_wire_events,
    encode_wire_messages,
    message_for,
    price_updated_wire,
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


@settings(max_examples=60, deadline=None)
@given(moments, moments, st.decimals(allow_nan=False, allow_infinity=False, places=6), st.text())
def test_a_price_tick_on_the_wire_is_byte_for_byte_its_model(
    as_of: datetime, accepted_at: datetime, amount: Decimal, trace_id: str
) -> None:
    """`price_updated_wire` (a price batch) writes exactly what the model path writes."""
    arrival = Arrival("prv_x", EventSource.BATCH, accepted_at, trace_id=trace_id[:128])
    fields: dict[str, Any] = {
        "asset_id": "a1",
        "amount": amount,
        "currency": "EUR",
        "as_of": as_of,
        "accepted_at": accepted_at,
    }
    ids = new_event_ids(2)
    models = [
        price_updated(arrival, **fields).model_copy(update={"event_id": uuid.UUID(i)}) for i in ids
    ]
    wires = [price_updated_wire(arrival, event_id=i, **fields) for i in ids]
    message_id, body = encode_wire_events(wires)
    message = EventMessage(message_id=uuid.UUID(message_id), events=models)
    assert body == encode_message(message)
    assert decode_message(body) == message
    single_id, single = encode_wire_events(wires[:1])
    assert single_id == ids[0]
    assert single == encode_message(message_for(models[:1]))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=6), moments, moments, st.text())
def test_an_asset_upsert_on_the_wire_is_byte_for_byte_its_model(
    document: dict[str, Any], updated_at: datetime, accepted_at: datetime, trace_id: str
) -> None:
    """`asset_upserted_wire` (ingest-api's pushes) writes exactly what the model path writes,
    integers beyond 64 bits included (through the same fallback)."""
    arrival = Arrival("prv_x", EventSource.PUSH, accepted_at, trace_id=trace_id[:128])
    fields: dict[str, Any] = {
        "asset_id": "a1",
        "updated_at": updated_at,
        "accepted_at": accepted_at,
        "document": document,
        "content_hash": HASH,
    }
    ids = new_event_ids(2)
    models = [asset_upserted(arrival, **fields, event_id=uuid.UUID(i)) for i in ids]
    wires = [asset_upserted_wire(arrival, event_id=i, **fields) for i in ids]
    message_id, body = encode_wire_events(wires)
    message = EventMessage(message_id=uuid.UUID(message_id), events=models)
    assert json.loads(body) == json.loads(encode_message(message))
    assert decode_message(body) == message
    single_id, single = encode_wire_events(wires[:1])
    assert single_id == ids[0]
    assert single == encode_message(message_for(models[:1]))


def _unix_ms(event_id: uuid.UUID) -> int:
    return event_id.int >> 80


def test_event_ids_drawn_together_are_time_ordered_uuids_of_version_7() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_event_ids(5000)
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert [str(u) for u in parsed] == ids
    assert {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    assert len(set(ids)) == 5000
    # One clock reading stamps the batch; the rest is random: every hex digit turns up in each
    # random position, the variant's four values too.
    assert len({_unix_ms(u) for u in parsed}) == 1
    assert before <= _unix_ms(parsed[0]) <= after
    assert {i[19] for i in ids} == set("89ab")
    assert all(len({i[p] for i in ids}) == 16 for p in (15, 16, 17, 20, 21, 35))


def test_an_event_id_carries_the_millisecond_it_was_drawn_in() -> None:
    before = time.time_ns() // 1_000_000
    first = new_event_id()
    after = time.time_ns() // 1_000_000
    assert (first.version, first.variant) == (7, uuid.RFC_4122)
    assert before <= _unix_ms(first) <= after
    many = [str(new_event_id()) for _ in range(5000)]
    assert len(set(many)) == 5000
    assert {i[14] for i in many} == {"7"} and {i[19] for i in many} == set("89ab")
    assert all(len({i[p] for i in many}) == 16 for p in (15, 16, 17, 20, 21, 35))
    # Ids drawn in a later millisecond sort after, as text and as Postgres orders uuids (bytes).
    time.sleep(0.002)
    later = new_event_id()
    batch = new_event_ids(3)
    assert first < later and first.bytes < later.bytes and str(first) < str(later)
    assert all(str(first) < i for i in batch)


def test_first_event_id_at_separates_the_ids_drawn_before_an_instant_from_those_after() -> None:
    drawn_before = new_event_id()
    time.sleep(0.002)
    instant = datetime.now(UTC)
    time.sleep(0.002)
    drawn_after = new_event_id()
    boundary = first_event_id_at(instant)
    assert drawn_before < boundary <= drawn_after
    assert first_event_id_at(datetime(1970, 1, 1, tzinfo=UTC)) == uuid.UUID(int=0)
    assert _unix_ms(first_event_id_at(datetime(2026, 11, 29, 12, 0, 0, 123999, tzinfo=UTC))) == (
        1_795_953_600_123
    )


def test_a_drawer_gives_unique_version_7_ids_drawn_when_its_batches_are() -> None:
    before = uuid.UUID(str(new_event_id())).int >> 80
    draw = event_id_drawer(batch=3)
    ids = [draw() for _ in range(10)]
    after = uuid.UUID(str(new_event_id())).int >> 80
    assert len(set(ids)) == 10
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after


@pytest.mark.parametrize("budget", [1, 3_000, 10_000, 10**9])
def test_messages_are_cut_within_a_byte_budget_in_order(budget: int) -> None:
    """`encode_wire_messages`: every event once, in order; each message within the budget unless
    it holds one event (sent whatever its size); one message when all fit."""
    arrival = Arrival("prv_0123456789abcdef", EventSource.BATCH, datetime.now(UTC), "t" * 32)
    events = [
        asset_upserted_wire(
            arrival,
            event_id=new_event_id(),
            asset_id=f"a{n}",
            updated_at=datetime.now(UTC),
            accepted_at=datetime.now(UTC),
            document={"id": f"a{n}", "name": "x" * (n * 97 % 2_000)},
            content_hash="0" * 64,
        )
        for n in range(40)
    ]
    messages = encode_wire_messages(events, budget)
    assert [e for _, _, part in messages for e in part] == events
    for message_id, body, part in messages:
        assert len(body) <= budget or len(part) == 1
        assert [e.asset_id for e in decode_message(body).events] == [e["asset_id"] for e in part]
        if len(part) == 1:  # a single event's message is named after it
            assert message_id == str(part[0]["event_id"])
    if budget == 10**9:
        assert len(messages) == 1
