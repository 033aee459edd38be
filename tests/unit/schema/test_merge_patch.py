"""RFC 7386 merge patches (the RFC's own examples) and the document a patch makes."""

from __future__ import annotations

from typing import Any

import pytest

from rwasync.schema.asset import AssetInvalid
from rwasync.schema.patch import merge_patch, patched_document
from tests.support.events import asset_doc, at, upserted

pytestmark = pytest.mark.unit

RFC_7386_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7386_EXAMPLES)
def test_the_rfc_examples(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_a_patched_document_is_validated_normalised_and_hashed() -> None:
    stored = upserted("p", "a1", at(1), price={"amount": "50", "currency": "USD"}).payload
    patch = {"updated_at": "2026-01-01T13:02:00+01:00", "price": {"amount": "52.10"}}
    result = patched_document(stored.document, patch, asset_id="a1", accepted_at=at(9))
    assert result.document["price"] == {"amount": "52.1", "currency": "USD"}
    assert result.document["updated_at"] == "2026-01-01T12:02:00.000000Z"
    expected = upserted("p", "a1", at(2), price={"amount": "52.1", "currency": "USD"}).payload
    assert result.content_hash == expected.content_hash


@pytest.mark.parametrize(
    ("patch", "pointer"),
    [({"status": "bogus"}, "/status"), ({"name": None}, "/name"), ({"id": "b2"}, "/id")],
)
def test_a_patch_making_the_document_invalid_names_the_field(
    patch: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(AssetInvalid) as raised:
        patched_document(asset_doc("a1", at(1)), patch, asset_id="a1", accepted_at=at(9))
    assert pointer in {e.pointer for e in raised.value.errors}
