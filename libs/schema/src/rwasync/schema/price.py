"""A price tick as a provider sends it (`PUT /v1/assets/{id}/price`, one item of `POST /v1/prices`).

Same field types and errors as the asset document; `as_of` is required here, because prices are
versioned by it.
"""

from datetime import datetime
from typing import Any

from rwasync.schema.fields import (
    AwareTimestamp,
    ContractModel,
    CurrencyCode,
    Money,
    validate_contract,
)


class Price(ContractModel):
    amount: Money
    currency: CurrencyCode
    as_of: AwareTimestamp


def parse_price(data: Any, *, now: datetime | None = None) -> Price:
    """Validate a price body; raises AssetInvalid (pointers `/amount`, `/currency`, `/as_of`)."""
    return validate_contract(Price, data, now=now)


def normalized_price(price: Price) -> dict[str, str]:
    """`{"amount": "12.5", "currency": "USD", "as_of": "...Z"}`: decimal string, UTC timestamp."""
    return price.model_dump(mode="json")
