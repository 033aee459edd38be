"""Properties of `parse_asset` on arbitrary input: it answers AssetInvalid or a valid Asset."""

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.schema.asset import (
    Address,
    Asset,
    AssetInvalid,
    Location,
    Media,
    Rental,
    Token,
    content_hash,
    normalized_document,
    parse_asset,
)
from rwasync.schema.jsonsafe import dumps

from .documents import NOW, detroit_house

pytestmark = pytest.mark.unit

# Keys the generated objects use: the document's own field names (so validation goes deep), plus
# random text.
FIELD_NAMES = sorted(
    {
        name
        for model in (Asset, Address, Token, Rental, Media, Location)
        for name in model.model_fields
    }
    | {"_meta", "amount", "currency", "as_of", "value", "unit", "bedrooms"}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**120), max_value=10**120),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            Decimal("sNaN"),
            Decimal("1E+999999"),
            Decimal("-0"),
            "1e999999999",
            "NaN",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "2025-05-30T09:15:00Z",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "xdai",
            "https://x.example/a",
            "\ud800",
            "a\x00b",
            b"bytes",
            datetime(2025, 1, 1),
            datetime(2025, 1, 1, tzinfo=UTC),
            datetime.max.replace(tzinfo=UTC),
        ]
    ),
    st.text(max_size=30),
    st.sampled_from(FIELD_NAMES),
)
json_ish = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=25,
)
documents = st.one_of(
    json_ish,
    st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), json_ish, max_size=20),
)


@st.composite
def mutated_houses(draw: st.DrawFn) -> dict[str, Any]:
    """The rich document with a few values somewhere inside replaced by arbitrary ones."""
    document = detroit_house()
    for _ in range(draw(st.integers(1, 4))):
        node: Any = document
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            node[key] = draw(json_ish)
            break
    return document


def check(document: Any) -> None:
    before = copy.deepcopy(document) if not isinstance(document, Decimal) else document
    try:
        asset = parse_asset(document, now=NOW)
    except AssetInvalid as invalid:
        assert invalid.errors
        assert all(error.pointer == "" or error.pointer.startswith("/") for error in invalid.errors)
        assert all(isinstance(error.message, str) and error.message for error in invalid.errors)
        dumps([error.as_dict() for error in invalid.errors])  # always fit for a 422 body
        return
    normalized = normalized_document(asset)
    # The normal form is a fixed point and always hashable.
    assert normalized_document(parse_asset(normalized, now=NOW)) == normalized
    assert len(content_hash(normalized)) == 32
    assert before is document or repr(before) == repr(document)  # input left untouched


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_arbitrary_input_is_valid_or_asset_invalid(document: Any) -> None:
    check(document)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_houses())
def test_mutated_documents_are_valid_or_asset_invalid(document: dict[str, Any]) -> None:
    check(document)
