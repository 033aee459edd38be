"""The price queue's decoder (`raw_events.decode_price_message`) against the models
(`decode_message`), on valid and mutated messages: whatever it decodes itself, the models decode
to equal values (amounts to the same digits and exponent); whatever it does not, it leaves to the
models, so a rejected message is rejected with the models' own reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.schema.events import Arrival, EventMessage, EventSource, PriceUpdated, price_updated
from rwasync.schema.messages import encode_message, message_for
from rwasync.schema.raw_events import RawPriceUpdated, decode_price_message
from tests.unit.schema.test_raw_events import (
    compact,
    decoded_alike,
    ids,
    moments,
    mutated_bodies,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


def assert_decoded_alike(body: bytes) -> bool:
    """The price decoder ends as the models do; returns whether it decoded the message itself."""
    pairs = decoded_alike(body, decode_price_message, (RawPriceUpdated,))
    for event, model in pairs or []:
        assert isinstance(event, RawPriceUpdated) and isinstance(model, PriceUpdated)
        mine, theirs = event.payload.as_of, model.payload.as_of
        assert (mine, mine.utcoffset()) == (theirs, theirs.utcoffset())
        # The same digits and exponent: Postgres keeps a numeric's scale ("1.50" is not "1.5").
        assert event.payload.amount.as_tuple() == model.payload.amount.as_tuple()
        assert event.payload.currency == model.payload.currency
    return pairs is not None


amounts = st.decimals(allow_nan=False, allow_infinity=False, places=None) | st.decimals(
    min_value=0, max_value=10**9, places=2
)


@st.composite
def price_messages(draw: st.DrawFn) -> EventMessage:
    """Messages of ticks as ingest-api writes them, with values hypothesis draws."""
    received = draw(moments)
    arrival = Arrival(
        draw(ids), draw(st.sampled_from(EventSource)), received, draw(st.text(max_size=130))
    )
    events = [
        price_updated(
            arrival,
            asset_id=draw(ids),
            amount=draw(amounts),
            currency=draw(st.sampled_from(["USD", "EUR", "CHF"]) | st.from_regex(r"\A[A-Z]{3}\Z")),
            as_of=draw(moments),
            accepted_at=draw(moments),
        ).model_copy(update={"event_id": draw(st.uuids())})
        for _ in range(draw(st.integers(1, 4)))
    ]
    return EventMessage(message_id=draw(st.uuids()), events=events)


@settings(max_examples=300, deadline=None)
@given(price_messages())
def test_what_ingest_api_writes_decodes_alike(message: EventMessage) -> None:
    body = encode_message(message)
    decoded_raw = assert_decoded_alike(body)
    plain = all(
        "E" not in str(e.payload.amount)
        and len(e.trace_id) <= 128
        and all(len(part) <= 60 for part in str(e.payload.amount).lstrip("-").split("."))
        for e in message.events
        if isinstance(e, PriceUpdated)
    )
    if plain:  # an exponent or more than 60 digits on a side takes the models' path
        assert decoded_raw


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bodies(price_messages()) | mutated_bodies())
def test_mutated_messages_end_alike(body: bytes) -> None:
    assert_decoded_alike(body)


def typical_body(**changes: Any) -> bytes:
    """A one-tick message as ingest-api writes it, with `changes` made to its JSON: keys of the
    event, or of its payload when prefixed `payload.`."""
    event = price_updated(
        Arrival("prv_x", EventSource.BATCH, T0, "trace"),
        asset_id="a1",
        amount=Decimal("101.50"),
        currency="USD",
        as_of=T0,
        accepted_at=T0,
    )
    tree = json.loads(encode_message(message_for([event])))
    for key, value in changes.items():
        target = tree["events"][0]
        if key.startswith("payload."):
            target, key = target["payload"], key.removeprefix("payload.")
        if value is None:
            del target[key]
        else:
            target[key] = value
    return compact(tree)


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        (typical_body(), True),
        (typical_body(**{"payload.amount": "-0.000"}), True),
        (typical_body(**{"payload.amount": "0001.50"}), True),
        (typical_body(**{"payload.amount": "1E+2"}), False),  # an exponent: the models
        (typical_body(**{"payload.amount": "1.5 "}), False),
        (typical_body(**{"payload.amount": 101.5}), False),  # a JSON number
        (typical_body(**{"payload.amount": "NaN"}), False),  # rejected by the models
        (typical_body(**{"payload.currency": "USD\n"}), False),
        (typical_body(**{"payload.currency": "usd"}), False),
        (typical_body(**{"payload.as_of": "2025-06-01T12:00:00.1234567Z"}), False),
        (typical_body(**{"payload.as_of": "2025-06-01T12:00:00"}), False),  # naive
        (typical_body(type=None), False),  # no type: rejected by the models
        (typical_body(type="asset.deleted"), False),
        (typical_body(extra=1), False),
        (typical_body(**{"payload.extra": 1}), False),
        (typical_body(schema_version=2), False),
        (typical_body(trace_id="t" * 129), False),
        (b'{"message_id":"00000000-0000-0000-0000-000000000000","events":[]}', False),
    ],
)
def test_the_forms_where_the_decoders_might_part(body: bytes, raw: bool) -> None:
    assert assert_decoded_alike(body) is raw
