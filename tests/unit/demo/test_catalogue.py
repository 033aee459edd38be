"""The demo provider's generated catalogue: every document passes the asset schema, ids are
unique, the feed envelope counts what it lists, and the demo's changes keep documents valid."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.catalogue import (
    CATALOGUE_SIZE,
    CatalogueInvalid,
    change_occupancy,
    change_rent,
    contract_address,
    feed_envelope,
    generate_catalogue,
    listed_price,
    next_price,
    validate_catalogue,
)
from rwasync.schema.asset import normalized_document, parse_asset
from rwasync.schema.chains import eip55_checksum

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_every_generated_asset_passes_the_asset_schema() -> None:
    assets = generate_catalogue(NOW)
    assert len(assets) == CATALOGUE_SIZE
    for asset in assets:
        parsed = parse_asset(asset, now=NOW)
        assert parsed.id == asset["id"]
        assert parsed.updated_at < NOW
    validate_catalogue(assets, NOW)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_any_seed_gives_valid_assets_with_unique_ids(seed: int) -> None:
    assets = generate_catalogue(NOW, seed=seed)
    ids = [asset["id"] for asset in assets]
    assert len(set(ids)) == len(ids) == CATALOGUE_SIZE
    validate_catalogue(assets, NOW)


def test_generation_is_reproducible_from_its_seed() -> None:
    assert generate_catalogue(NOW, seed=7) == generate_catalogue(NOW, seed=7)
    assert generate_catalogue(NOW, seed=7) != generate_catalogue(NOW, seed=8)


def test_assets_look_like_us_rentals_with_checksummed_tokens() -> None:
    for asset in generate_catalogue(NOW):
        assert asset["address"]["country"] == "US"
        assert asset["address"]["region"] in {"MI", "OH", "IL"}
        assert asset["property_type"] in {"single_family", "multi_family"}
        token = asset["token"]
        assert token["chain"] in {"gnosis", "ethereum"}
        assert token["contract_address"] == eip55_checksum(token["contract_address"])
        assert token["contract_address"] == contract_address(asset["id"], token["chain"])
        assert 1000 <= token["total_supply"] <= 10_000
        assert token["symbol"].startswith("REALTOKEN-S-")
        assert Decimal(40) < listed_price(asset) < Decimal(60)
        rental = asset["rental"]
        assert 0 <= rental["units_rented"] <= rental["units_total"]
        # The stored form keeps the address as sent: it is already in EIP-55 form.
        stored = normalized_document(parse_asset(asset, now=NOW))
        assert stored["token"]["contract_address"] == token["contract_address"]


def test_feed_envelope_counts_what_it_lists_and_serialises() -> None:
    assets = generate_catalogue(NOW)
    envelope = feed_envelope(assets, NOW + timedelta(seconds=1))
    assert envelope["total_assets"] == len(envelope["assets"]) == CATALOGUE_SIZE
    assert envelope["timestamp"] == "2025-06-01T12:00:01.000000Z"
    decoded = orjson.loads(orjson.dumps(envelope))
    validate_catalogue(decoded["assets"], NOW)


def test_changes_keep_documents_valid_and_take_the_new_version() -> None:
    rng = random.Random(3)
    later = NOW + timedelta(minutes=5)
    for asset in generate_catalogue(NOW):
        for change in (change_rent(asset, later, rng), change_occupancy(asset, later, rng)):
            parsed = parse_asset(change.document, now=later)
            assert parsed.updated_at == later
            assert change.document["id"] == asset["id"]
            assert change.summary
        assert asset["updated_at"] != "2025-06-01T12:05:00.000000Z", "the original is untouched"


def test_occupancy_changes_stay_within_the_units() -> None:
    rng = random.Random(11)
    asset = generate_catalogue(NOW)[0]
    for step in range(50):
        asset = change_occupancy(asset, NOW + timedelta(seconds=step), rng).document
        rental = asset["rental"]
        assert 0 <= rental["units_rented"] <= rental["units_total"]
        expected = Decimal(rental["units_rented"]) / Decimal(rental["units_total"])
        assert Decimal(rental["occupancy_rate"]) == expected.quantize(Decimal("0.0001"))


def test_price_walk_stays_positive_in_cents_and_near_the_listing() -> None:
    rng = random.Random(5)
    listed = price = Decimal("50.00")
    for _ in range(2000):
        price = next_price(price, listed, rng)
        assert price == price.quantize(Decimal("0.01"))
        assert Decimal(40) < price < Decimal(60)


def test_an_invalid_document_is_reported_by_id_and_pointer() -> None:
    assets = generate_catalogue(NOW)
    assets[2] = {**assets[2], "status": "for_sale"}
    assets[3] = {**assets[3], "id": assets[0]["id"]}
    with pytest.raises(CatalogueInvalid) as raised:
        validate_catalogue(assets, NOW)
    message = str(raised.value)
    assert f"({assets[2]['id']}) /status" in message
    assert "duplicate id" in message
