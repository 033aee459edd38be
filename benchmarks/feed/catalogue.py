"""A generated provider catalogue for the feed benchmark: realistic assets of about 1.5 KB each
(address, location, token on an EVM chain, price, valuation, rental figures, legal, media,
attributes), deterministic per seed, written as a feed in any of the formats the poller reads.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from rwasync.schema.chains import normalize_address
from rwasync.schema.timestamps import timestamp_text

CITIES = (
    ("Detroit", "MI", "482", 42.3314, -83.0458),
    ("Cleveland", "OH", "441", 41.4993, -81.6944),
    ("Chicago", "IL", "606", 41.8781, -87.6298),
    ("Toledo", "OH", "436", 41.6528, -83.5379),
    ("Memphis", "TN", "381", 35.1495, -90.0490),
)
STREETS = ("Kentucky St", "Appoline St", "Greenlawn St", "Parkwood Dr", "S Wabash Ave",
           "E 118th St", "Kinsman Rd", "W Marquette Rd", "Coyle St", "Whitcomb St")  # fmt: skip
TYPES = ("single_family", "multi_family", "condo", "commercial", "mixed_use")


def asset(n: int, *, revision: int = 0, base: datetime) -> dict[str, Any]:
    """Asset number `n` of the catalogue; a higher `revision` changes its price and rent."""
    rng = random.Random(n * 7919 + revision)
    city, region, zip3, lat, lon = CITIES[n % len(CITIES)]
    street = STREETS[(n // 7) % len(STREETS)]
    number = 1000 + (n * 37) % 18000
    units = rng.randint(1, 12)
    rented = rng.randint(0, units)
    supply = rng.choice((1000, 2500, 5000, 10000, 20000))
    price = rng.randint(4500, 9000) / 100
    gross = round(units * rng.randint(900, 1600) * 12 * (1 + revision / 100), 2)
    raw_address = hashlib.sha256(f"bench:{n}".encode()).hexdigest()[:40]
    asset_id = f"bench-{n:07d}"
    updated = base - timedelta(days=30) + timedelta(seconds=n % 86400, minutes=revision)
    return {
        "id": asset_id,
        "updated_at": timestamp_text(updated),
        "status": "active" if n % 23 else "sold",
        "name": f"{number} {street}, {city}, {region} {zip3}{n % 100:02d}",
        "description": (
            f"A {units}-unit rental property on {street} in {city}, renovated and fully "
            f"managed; tenants pay utilities. Listing {n} of the benchmark catalogue, "
            "with a description long enough to look like a provider's marketing text."
        ),
        "property_type": TYPES[n % len(TYPES)] if units > 1 else "single_family",
        "address": {
            "line1": f"{number} {street}",
            "city": city,
            "region": region,
            "postal_code": f"{zip3}{n % 100:02d}",
            "country": "US",
        },
        "location": {
            "lat": f"{lat + (n % 1000) / 10000:.6f}",
            "lon": f"{lon - (n % 997) / 10000:.6f}",
        },
        "token": {
            "symbol": f"REALTOKEN-S-{number}-{street.replace(' ', '-').upper()}",
            "chain": "gnosis",
            "contract_address": normalize_address("gnosis", "0x" + raw_address),
            "total_supply": supply,
            "decimals": 18,
        },
        "price": {"amount": f"{price:.2f}", "currency": "USD"},
        "valuation": {
            "amount": f"{price * supply:.2f}",
            "currency": "USD",
            "as_of": timestamp_text(base - timedelta(days=60)),
        },
        "rental": {
            "gross_yearly": f"{gross:.2f}",
            "net_yearly": f"{gross * 0.62:.2f}",
            "currency": "USD",
            "occupancy_rate": f"{rented / units:.4f}",
            "units_total": units,
            "units_rented": rented,
        },
        "legal": {
            "status": "LLC",
            "jurisdiction": "US-DE",
            "entity_name": f"RealToken S {number} {street} LLC",
        },
        "area": {"value": rng.randint(700, 9000), "unit": "sqft"},
        "year_built": rng.randint(1900, 2015),
        "media": [
            {
                "url": f"https://images.example.com/bench/{asset_id}/{k}.jpg",
                "kind": "image",
                "title": f"View {k}",
            }
            for k in range(2)
        ],
        "attributes": {"neighborhood": street.split()[0], "section8": n % 3 == 0, "rank": n % 50},
    }


def assets(
    count: int, *, base: datetime, changed_every: int = 0, revision: int = 1
) -> Iterator[dict[str, Any]]:
    """The catalogue; with `changed_every` N, every Nth asset at the given revision."""
    for n in range(count):
        changed = changed_every and n % changed_every == 0
        yield asset(n, revision=revision if changed else 0, base=base)


def write_json(path: Path, items: Iterator[dict[str, Any]], count: int, at: datetime) -> None:
    """A JSON envelope, written item by item so a million assets never sit in memory."""
    with path.open("wb") as out:
        head = {"timestamp": timestamp_text(at), "total_assets": count}
        out.write(orjson.dumps(head)[:-1] + b', "assets": [\n')
        for k, item in enumerate(items):
            if k:
                out.write(b",\n")
            out.write(orjson.dumps(item))
        out.write(b"\n]}\n")


def write_jsonl(out: BinaryIO, items: Iterator[dict[str, Any]]) -> None:
    for item in items:
        out.write(orjson.dumps(item) + b"\n")


def flatten(document: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted paths of a document, list elements by index (the CSV header form)."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield from flatten(value, f"{prefix}{key}.")
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from flatten(value, f"{prefix}{index}.")
    else:
        yield prefix[:-1], document


def write_csv(out: io.TextIOBase, items: list[dict[str, Any]]) -> None:
    rows = [dict(flatten(item)) for item in items]
    header: list[str] = []
    for row in rows:
        header.extend(key for key in row if key not in header)
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def gzip_file(path: Path, level: int = 6) -> Path:
    target = path.with_name(path.name + ".gz")
    with path.open("rb") as src, gzip.open(target, "wb", compresslevel=level) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    return target
