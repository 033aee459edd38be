"""A price tick: the same field types and errors as the asset document, `as_of` required."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from rwasync.schema.asset import AssetInvalid, FieldError
from rwasync.schema.price import Price, normalized_price, parse_price
from rwasync.schema.timestamps import timestamp_text

from .documents import NOW

pytestmark = pytest.mark.unit

TICK = {"amount": Decimal("54.20"), "currency": "USD", "as_of": "2025-06-01T08:00:00-04:00"}


def test_a_valid_tick() -> None:
    price = parse_price(TICK, now=NOW)

    assert price == Price(amount=Decimal("54.2"), currency="USD", as_of=NOW)
    assert normalized_price(price) == {
        "amount": "54.2",
        "currency": "USD",
        "as_of": "2025-06-01T12:00:00.000000Z",
    }


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"amount": 0}, [FieldError("/amount", "must be greater than 0")]),
        ({"amount": True}, [FieldError("/amount", "must be a number, not a boolean")]),
        (
            {"currency": "XYZ"},
            [
                FieldError(
                    "/currency", "unknown currency 'XYZ': expected an ISO 4217 code such as USD"
                )
            ],
        ),
        (
            {"currency": "ısk"},  # Unicode's upper case is ISK (a price trial)
            [
                FieldError(
                    "/currency", "unknown currency 'ısk': expected an ISO 4217 code such as USD"
                )
            ],
        ),
        (
            {"as_of": None},
            [
                FieldError(
                    "/as_of",
                    "must be an RFC 3339 timestamp with an offset, e.g. 2024-05-01T12:00:00Z",
                )
            ],
        ),
        (
            {"as_of": timestamp_text(NOW + timedelta(minutes=6))},
            [FieldError("/as_of", "must not be more than 5 minutes in the future")],
        ),
        ({"asset_id": "x"}, [FieldError("/asset_id", "unknown field")]),
    ],
)
def test_invalid_ticks(changes: dict[str, Any], expected: list[FieldError]) -> None:
    with pytest.raises(AssetInvalid) as caught:
        parse_price(TICK | changes, now=NOW)
    assert caught.value.errors == expected


def test_every_field_is_required() -> None:
    with pytest.raises(AssetInvalid) as caught:
        parse_price({}, now=NOW)
    assert [error.pointer for error in caught.value.errors] == ["/amount", "/currency", "/as_of"]
