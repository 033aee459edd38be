"""Merge patches of the asset document: what ingest-api can check without the stored document,
and the normalised patch it publishes; on any input, AssetInvalid or a patch carrying
`updated_at`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from rwasync.schema.errors import AssetInvalid
from rwasync.schema.jsonsafe import dumps
from rwasync.schema.patch import normalized_patch, parse_patch

from .documents import NOW
from .test_properties import documents, mutated_houses

pytestmark = pytest.mark.unit

STAMP = "2025-05-31T10:00:00+02:00"


def errors_of(patch: Any) -> dict[str, str]:
    with pytest.raises(AssetInvalid) as caught:
        parse_patch(patch, path_id="a1", now=NOW)
    return {error.pointer: error.message for error in caught.value.errors}


def test_a_patch_is_normalised_keeping_its_nulls() -> None:
    patch = parse_patch(
        {
            "updated_at": STAMP,
            "id": "a1",
            "token": {
                "chain": "xdai",
                "contract_address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            },
            "rental": {"gross_yearly": "1200.50", "currency": "usd"},
            "address": None,
            "attributes": {"pool": None, "floors": "2"},
            "_meta": {"deleted": False},
        },
        path_id="a1",
        now=NOW,
    )
    assert normalized_patch(patch) == {
        "id": "a1",
        "updated_at": "2025-05-31T08:00:00.000000Z",
        "token": {
            "chain": "gnosis",
            "contract_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        },
        "rental": {"gross_yearly": "1200.5", "currency": "USD"},
        "address": None,
        "attributes": {"pool": None, "floors": "2"},
    }


@pytest.mark.parametrize(
    ("patch", "pointers"),
    [
        ({}, {"/updated_at"}),
        ({"updated_at": None}, {"/updated_at"}),
        (
            {"updated_at": STAMP, "id": None, "status": None, "name": None},
            {"/id", "/status", "/name"},
        ),
        ({"updated_at": STAMP, "id": "a2"}, {"/id"}),
        ({"updated_at": "2025-06-01T12:06:00Z"}, {"/updated_at"}),
        ({"updated_at": STAMP, "area": {"unit": None}}, {"/area/unit"}),
        (
            {"updated_at": STAMP, "token": {"chain": "ethereum", "contract_address": None}},
            {"/token/contract_address"},
        ),
        ({"updated_at": STAMP, "price": {"amount": 0}}, {"/price/amount"}),
        (
            {"updated_at": STAMP, "rental": {"units_total": 1, "units_rented": 2}},
            {"/rental/units_rented"},
        ),
        ({"updated_at": STAMP, "media": [{"url": "http://x.example"}]}, {"/media/0/url"}),
        ({"updated_at": STAMP, "address": {"planet": "Mars"}}, {"/address/planet"}),
        ({"updated_at": STAMP, "description": "x\x00"}, {"/description"}),
        ("text", {""}),
    ],
)
def test_what_a_patch_cannot_be(patch: Any, pointers: set[str]) -> None:
    assert set(errors_of(patch)) == pointers


def test_nested_rules_that_need_the_stored_document_are_left_to_the_reconciler() -> None:
    # The address alone cannot be checked against a chain the patch does not carry.
    patch = parse_patch(
        {"updated_at": STAMP, "token": {"contract_address": "not checked here"}},
        path_id="a1",
        now=NOW,
    )
    assert normalized_patch(patch)["token"] == {"contract_address": "not checked here"}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents)
def test_any_input_is_a_patch_with_updated_at_or_asset_invalid(data: Any) -> None:
    try:
        patch = parse_patch(data, path_id="a1", now=NOW)
    except AssetInvalid as exc:
        assert exc.errors and all(e.message for e in exc.errors)
        return
    published = normalized_patch(patch)
    assert "updated_at" in published
    dumps(published)  # JSON-ready


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutated_houses())
def test_a_mutated_document_sent_as_a_patch_never_escapes_validation(data: dict[str, Any]) -> None:
    data = {**data, "id": "a1"}
    try:
        patch = parse_patch(data, path_id="a1", now=NOW)
    except AssetInvalid:
        return
    dumps(normalized_patch(patch))
