"""The demo provider's catalogue: a dozen generated rental properties, the feed envelope that
lists them, and the small changes (rent, occupancy, price) that keep the demo moving.

Pure functions, no I/O: documents are JSON-ready dicts (money as decimal strings, as providers
are advised to send it), generated from a seeded random source so a test can reproduce them.
"""

from __future__ import annotations

import copy
import hashlib
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from rwasync.schema.asset import AssetInvalid, parse_asset
from rwasync.schema.chains import normalize_address
from rwasync.schema.timestamps import timestamp_text

DEFAULT_SEED: Final = 20240501
CATALOGUE_SIZE: Final = 12
MEDIA_HOST: Final = "https://images.example.com/demo-estates"
CENT: Final = Decimal("0.01")
RATE_STEP: Final = Decimal("0.0001")


@dataclass(frozen=True)
class Street:
    name: str
    postal_code: str
    neighborhood: str


@dataclass(frozen=True)
class City:
    code: str
    name: str
    region: str
    lat: float
    lon: float
    house_numbers: tuple[int, int]
    monthly_rent_per_unit: tuple[int, int]
    streets: tuple[Street, ...]


DETROIT: Final = City(
    "det", "Detroit", "MI", 42.3314, -83.0458, (8000, 20499), (950, 1250),
    (
        Street("Kentucky St", "48221", "Bagley"),
        Street("Appoline St", "48227", "Russell Woods"),
        Street("Greenlawn St", "48238", "Russell Woods"),
        Street("Coyle St", "48235", "Grandmont"),
        Street("Hartwell St", "48235", "Bagley"),
        Street("Stoepel St", "48221", "Martin Park"),
        Street("Whitcomb St", "48227", "Grandmont"),
        Street("Mettetal St", "48227", "Warrendale"),
    ),
)  # fmt: skip
CLEVELAND: Final = City(
    "cle", "Cleveland", "OH", 41.4993, -81.6944, (1000, 16999), (900, 1200),
    (
        Street("E 118th St", "44108", "Glenville"),
        Street("Parkwood Dr", "44108", "Glenville"),
        Street("Ashbury Ave", "44106", "Glenville"),
        Street("E 143rd St", "44120", "Mount Pleasant"),
        Street("Kinsman Rd", "44104", "Union-Miles"),
        Street("Ingleside Rd", "44120", "Buckeye-Shaker"),
    ),
)  # fmt: skip
CHICAGO: Final = City(
    "chi", "Chicago", "IL", 41.8781, -87.6298, (6000, 8999), (1250, 1650),
    (
        Street("S Wabash Ave", "60619", "Chatham"),
        Street("S Indiana Ave", "60619", "Chatham"),
        Street("W Marquette Rd", "60621", "Englewood"),
        Street("S Prairie Ave", "60637", "Woodlawn"),
        Street("S Michigan Ave", "60619", "Greater Grand Crossing"),
        Street("S Throop St", "60620", "Auburn Gresham"),
    ),
)  # fmt: skip
# Five Detroit, four Cleveland and three Chicago properties, in that order.
CITY_PLAN: Final = (DETROIT,) * 5 + (CLEVELAND,) * 4 + (CHICAGO,) * 3


class CatalogueInvalid(Exception):
    """A generated document does not pass the asset schema: a bug in the generator."""


@dataclass(frozen=True)
class Change:
    """An asset document after one change, and a short line saying what changed."""

    document: dict[str, Any]
    summary: str


def money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_EVEN))


def contract_address(asset_id: str, chain: str) -> str:
    """A stable EIP-55 address per asset: 20 bytes of SHA-256 over the asset id."""
    raw = hashlib.sha256(f"demo-estates:{asset_id}".encode()).hexdigest()[:40]
    return normalize_address(chain, "0x" + raw)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _pick_address(rng: random.Random, city: City, taken: set[str]) -> tuple[int, Street, str]:
    while True:
        number = rng.randint(*city.house_numbers)
        street = rng.choice(city.streets)
        asset_id = f"{city.code}-{number}-{_slug(street.name)}".lower()
        if asset_id not in taken:
            taken.add(asset_id)
            return number, street, asset_id


def _occupancy(rented: int, total: int) -> str:
    return str((Decimal(rented) / Decimal(total)).quantize(RATE_STEP))


def generate_asset(
    rng: random.Random, city: City, updated_at: datetime, taken: set[str]
) -> dict[str, Any]:
    """One rental property with plausible figures: rent, yield, token supply near $50 a token."""
    number, street, asset_id = _pick_address(rng, city, taken)
    multi = rng.random() < 0.35
    units = rng.randint(2, 4 if city is not CHICAGO else 6) if multi else 1
    rented = units if rng.random() < 0.7 else rng.randint(max(0, units - 1), units)
    monthly_rent = Decimal(rng.randint(*city.monthly_rent_per_unit))
    gross = monthly_rent * 12 * units
    net = gross * Decimal(str(round(rng.uniform(0.60, 0.72), 3)))
    # Gross yields of 11-14 % are typical of these neighbourhoods; the token total is the value.
    value = (gross / Decimal(str(round(rng.uniform(0.11, 0.14), 4)))).quantize(Decimal(1000))
    price = Decimal(str(round(rng.uniform(48.0, 56.0), 2)))
    supply = max(1000, min(10_000, int(value / price)))
    chain = "gnosis" if rng.random() < 0.75 else "ethereum"
    year_built = rng.randint(1905, 1962)
    bedrooms = rng.randint(2, 4) * units if multi else rng.randint(2, 4)
    bathrooms = rng.choice((1, 1.5, 2))
    kind = f"{units}-unit multi-family" if multi else "single-family"
    as_of = timestamp_text(updated_at)
    line1 = f"{number} {street.name}"
    symbol = f"REALTOKEN-S-{number}-{_slug(street.name)}-{city.name}-{city.region}".upper()
    return {
        "id": asset_id,
        "updated_at": as_of,
        "status": "active",
        "name": f"{line1}, {city.name}, {city.region} {street.postal_code}",
        "description": (
            f"{kind.capitalize()} rental in {city.name}'s {street.neighborhood} neighbourhood, "
            f"built in {year_built}, {bedrooms} bedrooms. "
            "Managed by Demo Estates Property Management."
        ),
        "property_type": "multi_family" if multi else "single_family",
        "address": {
            "line1": line1,
            "city": city.name,
            "region": city.region,
            "postal_code": street.postal_code,
            "country": "US",
        },
        "location": {
            "lat": round(city.lat + rng.uniform(-0.07, 0.07), 6),
            "lon": round(city.lon + rng.uniform(-0.12, 0.12), 6),
        },
        "token": {
            "symbol": symbol,
            "chain": chain,
            "contract_address": contract_address(asset_id, chain),
            "total_supply": supply,
            "decimals": 18,
        },
        "price": {"amount": money(price), "currency": "USD", "as_of": as_of},
        "valuation": {"amount": money(price * supply), "currency": "USD", "as_of": as_of},
        "rental": {
            "gross_yearly": money(gross),
            "net_yearly": money(net),
            "currency": "USD",
            "occupancy_rate": _occupancy(rented, units),
            "units_total": units,
            "units_rented": rented,
        },
        "legal": {
            "status": "registered",
            "jurisdiction": "US-DE",
            "entity_name": f"Demo Estates {number} {street.name} LLC",
        },
        "area": {
            "value": rng.randint(1800, 4800) if multi else rng.randint(850, 1700),
            "unit": "sqft",
        },
        "year_built": year_built,
        "media": [
            {"url": f"{MEDIA_HOST}/{asset_id}/front.jpg", "kind": "image", "title": "Front"},
            {"url": f"{MEDIA_HOST}/{asset_id}/kitchen.jpg", "kind": "image", "title": "Kitchen"},
        ],
        "attributes": {
            "neighborhood": street.neighborhood,
            "bedrooms": bedrooms,
            "bathrooms": bathrooms,
            "section_8": rng.random() < 0.4,
            "heating": rng.choice(("forced air", "boiler", "radiant")),
        },
    }


def generate_catalogue(
    now: datetime, *, seed: int = DEFAULT_SEED, size: int = CATALOGUE_SIZE
) -> list[dict[str, Any]]:
    """`size` assets last modified at various times in the month before `now`."""
    rng = random.Random(seed)
    taken: set[str] = set()
    assets = []
    for index in range(size):
        city = CITY_PLAN[index % len(CITY_PLAN)]
        updated_at = now - timedelta(hours=rng.uniform(6, 30 * 24))
        assets.append(generate_asset(rng, city, updated_at, taken))
    # One listing is announced but not yet open, as real catalogues have.
    assets[-1]["status"] = "coming_soon"
    return assets


def feed_envelope(assets: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The JSON feed envelope (docs/api.md, "Feeds"): generation time, count and every asset."""
    return {"timestamp": timestamp_text(now), "total_assets": len(assets), "assets": assets}


def validate_catalogue(assets: list[dict[str, Any]], now: datetime | None = None) -> None:
    """Every document passes `parse_asset` and ids are unique; CatalogueInvalid otherwise."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, asset in enumerate(assets):
        asset_id = str(asset.get("id"))
        if asset_id in seen:
            problems.append(f"asset {index} ({asset_id}): duplicate id")
        seen.add(asset_id)
        try:
            parse_asset(asset, now=now)
        except AssetInvalid as exc:
            problems.extend(
                f"asset {index} ({asset_id}) {error.pointer}: {error.message}"
                for error in exc.errors
            )
    if problems:
        raise CatalogueInvalid("; ".join(problems))


def change_rent(asset: dict[str, Any], now: datetime, rng: random.Random) -> Change:
    """A rent review: gross and net rent move by -3 % to +5 %, the version becomes `now`."""
    document = copy.deepcopy(asset)
    rental = document["rental"]
    factor = Decimal(str(round(rng.uniform(0.97, 1.05), 3)))
    old_gross = Decimal(rental["gross_yearly"])
    rental["gross_yearly"] = money(old_gross * factor)
    rental["net_yearly"] = money(Decimal(rental["net_yearly"]) * factor)
    document["updated_at"] = timestamp_text(now)
    return Change(document, f"gross rent {money(old_gross)} -> {rental['gross_yearly']} USD/year")


def change_occupancy(asset: dict[str, Any], now: datetime, rng: random.Random) -> Change:
    """A tenant moves out or a unit is let; the version becomes `now`."""
    document = copy.deepcopy(asset)
    rental = document["rental"]
    total, rented = int(rental["units_total"]), int(rental["units_rented"])
    if rented == total or (rented > 0 and rng.random() < 0.4):
        rented -= 1
        what = "a tenant moved out"
    else:
        rented += 1
        what = "a unit was let"
    old_rate = Decimal(rental["occupancy_rate"])
    rental["units_rented"] = rented
    rental["occupancy_rate"] = _occupancy(rented, total)
    document["updated_at"] = timestamp_text(now)
    new_rate = Decimal(rental["occupancy_rate"])
    return Change(
        document,
        f"{what}: {rented} of {total} units let, occupancy {old_rate:.0%} -> {new_rate:.0%}",
    )


def listed_price(asset: dict[str, Any]) -> Decimal:
    return Decimal(asset["price"]["amount"])


def next_price(current: Decimal, listed: Decimal, rng: random.Random) -> Decimal:
    """A random walk step of about 0.5 % that drifts back towards the listed price."""
    step = current * Decimal(str(round(rng.gauss(0, 0.005), 5)))
    pull = (listed - current) * Decimal("0.1")
    return max(CENT, (current + step + pull).quantize(CENT, rounding=ROUND_HALF_EVEN))
