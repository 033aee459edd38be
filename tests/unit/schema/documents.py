"""Documents the schema tests start from: one realistic asset with every optional field."""

import copy
from datetime import UTC, datetime
from typing import Any

from rwasync.schema.jsonsafe import loads

# Every test validates against this clock, so "the future" and "next year" never drift.
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# A tokenised single-family house in Detroit, as a provider would send it (gnosis, lowercase
# address, supply above 2^53, money with trailing zeros, a local offset on `updated_at`).
DETROIT_HOUSE_JSON = """
{
  "id": "det-48214:2417-van-dyke.A",
  "updated_at": "2025-05-30T09:15:00-04:00",
  "status": "active",
  "name": "2417 Van Dyke Street, Detroit",
  "description": "Renovated 3-bed brick bungalow in West Village, let to a Section 8 tenant.",
  "property_type": "single_family",
  "address": {
    "line1": "2417 Van Dyke Street",
    "line2": "Unit A",
    "city": "Detroit",
    "region": "MI",
    "postal_code": "48214",
    "country": "US"
  },
  "location": {"lat": 42.35410, "lon": -82.99870},
  "token": {
    "symbol": "REALTOKEN-S-2417-VAN-DYKE-ST",
    "chain": "gnosis",
    "contract_address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    "total_supply": 10000000000000000000000,
    "decimals": 18
  },
  "price": {"amount": 54.20, "currency": "USD", "as_of": "2025-05-30T00:00:00Z"},
  "valuation": {"amount": "108400.00", "currency": "USD", "as_of": "2025-04-15T00:00:00+00:00"},
  "rental": {
    "gross_yearly": 13800.00,
    "net_yearly": 9911.5,
    "currency": "USD",
    "occupancy_rate": 1.0,
    "units_total": 1,
    "units_rented": 1
  },
  "legal": {
    "status": "Series LLC",
    "jurisdiction": "US-DE",
    "entity_name": "RealToken S 2417 Van Dyke St LLC"
  },
  "area": {"value": 1152, "unit": "sqft"},
  "year_built": 1925,
  "media": [
    {"url": "https://cdn.example.com/2417-van-dyke/front.jpg", "kind": "image", "title": "Front"},
    {"url": "https://cdn.example.com/2417-van-dyke/oa.pdf", "kind": "document",
     "title": "Operating agreement"}
  ],
  "attributes": {
    "bedrooms": 3,
    "bathrooms": 1.50,
    "section_8": true,
    "neighborhood": "West Village",
    "hoa_fee": null
  }
}
"""

# What DETROIT_HOUSE_JSON normalises to.
DETROIT_HOUSE_NORMALIZED: dict[str, Any] = {
    "id": "det-48214:2417-van-dyke.A",
    "updated_at": "2025-05-30T13:15:00.000000Z",
    "status": "active",
    "name": "2417 Van Dyke Street, Detroit",
    "description": "Renovated 3-bed brick bungalow in West Village, let to a Section 8 tenant.",
    "property_type": "single_family",
    "address": {
        "line1": "2417 Van Dyke Street",
        "line2": "Unit A",
        "city": "Detroit",
        "region": "MI",
        "postal_code": "48214",
        "country": "US",
    },
    "location": {"lat": "42.3541", "lon": "-82.9987"},
    "token": {
        "symbol": "REALTOKEN-S-2417-VAN-DYKE-ST",
        "chain": "gnosis",
        "contract_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "total_supply": "10000000000000000000000",
        "decimals": 18,
    },
    "price": {"amount": "54.2", "currency": "USD", "as_of": "2025-05-30T00:00:00.000000Z"},
    "valuation": {
        "amount": "108400",
        "currency": "USD",
        "as_of": "2025-04-15T00:00:00.000000Z",
    },
    "rental": {
        "gross_yearly": "13800",
        "net_yearly": "9911.5",
        "currency": "USD",
        "occupancy_rate": "1",
        "units_total": 1,
        "units_rented": 1,
    },
    "legal": {
        "status": "Series LLC",
        "jurisdiction": "US-DE",
        "entity_name": "RealToken S 2417 Van Dyke St LLC",
    },
    "area": {"value": "1152", "unit": "sqft"},
    "year_built": 1925,
    "media": [
        {
            "url": "https://cdn.example.com/2417-van-dyke/front.jpg",
            "kind": "image",
            "title": "Front",
        },
        {
            "url": "https://cdn.example.com/2417-van-dyke/oa.pdf",
            "kind": "document",
            "title": "Operating agreement",
        },
    ],
    "attributes": {
        "bedrooms": 3,
        "bathrooms": "1.5",
        "section_8": True,
        "neighborhood": "West Village",
    },
}

MINIMAL_JSON = '{"id": "a1", "updated_at": "2025-05-01T00:00:00Z", "status": "sold", "name": "A"}'

DELETE = object()


def detroit_house() -> dict[str, Any]:
    """A fresh copy of the rich document, parsed as ingest-api parses bodies."""
    document: dict[str, Any] = loads(DETROIT_HOUSE_JSON)
    return document


def minimal() -> dict[str, Any]:
    document: dict[str, Any] = loads(MINIMAL_JSON)
    return document


def changed(document: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    """A copy of `document` with the value at a simple pointer replaced (or removed: DELETE)."""
    result = copy.deepcopy(document)
    *parents, last = pointer.strip("/").split("/")
    node: Any = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        del node[last]
    else:
        node[last] = value
    return result
