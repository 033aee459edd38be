"""JSON Merge Patch (RFC 7386) of an asset document: what ingest-api can check without the stored
document, the normalised patch it publishes (docs/api.md, `PATCH /v1/assets/{id}`), and the
document a patch makes of a stored one, which the reconciler applies.

A patch is an object; `null` removes a field, a nested object is itself a merge patch, an array
replaces the whole array. Every non-null value is validated as far as a partial document allows:
each present field by its own rule, each nested object's present fields by theirs, the rules that
tie two fields together only when both are in the patch. `updated_at` is required (it versions the
patch), and `id`, `updated_at`, `status` and `name` can never be removed, nor a nested object's
required fields. The reconciler validates the patched document as a whole when it applies it.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import create_model, field_serializer

from rwasync.schema.asset import (
    Address,
    Area,
    Asset,
    AssetPrice,
    AttributeScalar,
    Legal,
    Location,
    Rental,
    Token,
    Valuation,
    attribute_json,
    content_hash_hex,
    normalized_document,
    parse_asset,
)
from rwasync.schema.errors import AssetInvalid, FieldError, json_pointer, truncated
from rwasync.schema.fields import AwareTimestamp, ContractModel, validate_contract

# The nested objects of the document, each patched as a merge patch of its own.
NESTED: Final[dict[str, type[ContractModel]]] = {
    "address": Address,
    "location": Location,
    "token": Token,
    "price": AssetPrice,
    "valuation": Valuation,
    "rental": Rental,
    "legal": Legal,
    "area": Area,
}
# Top-level fields a patch may change but never remove.
NOT_REMOVABLE: Final = frozenset({"id", "updated_at", "status", "name"})


def _partial(model: type[ContractModel], **overrides: Any) -> type[ContractModel]:
    """`model` with every field optional (absent = untouched, null = removed), keeping its field
    types and validators; `overrides` replace a field's type."""
    fields: dict[str, Any] = {
        name: (overrides.get(name, info.rebuild_annotation()) | None, None)
        for name, info in model.model_fields.items()
    }
    partial: type[ContractModel] = create_model(  # type: ignore[call-overload]
        f"{model.__name__}Patch", __base__=model, __module__=__name__, **fields
    )
    return partial


_PartialAsset = _partial(Asset, **{name: _partial(nested) for name, nested in NESTED.items()})


class AssetPatch(_PartialAsset):  # type: ignore[misc,valid-type]
    """A merge patch of the asset document; `updated_at` is required."""

    updated_at: AwareTimestamp

    @field_serializer("attributes", when_used="json")
    def _attributes_json(
        self, attributes: dict[str, AttributeScalar] | None
    ) -> dict[str, str | int | bool | None] | None:
        # Unlike a document's, a patch's null attribute is kept: it removes that attribute.
        if attributes is None:
            return None
        return {
            key: None if value is None else attribute_json(value)
            for key, value in attributes.items()
        }


def _removals(patch: dict[str, Any]) -> list[FieldError]:
    """Nulls on fields that cannot be removed (at the top, or required in a nested object)."""
    errors = [
        FieldError(json_pointer([name]), "must not be null: this field cannot be removed")
        for name in sorted(NOT_REMOVABLE)
        if name in patch and patch[name] is None
    ]
    for name, nested in NESTED.items():
        value = patch.get(name)
        if not isinstance(value, dict):
            continue
        errors += [
            FieldError(json_pointer([name, field]), "must not be null: this field is required here")
            for field, info in nested.model_fields.items()
            if info.is_required() and field in value and value[field] is None
        ]
    return errors


def parse_patch(data: Any, *, path_id: str, now: datetime | None = None) -> AssetPatch:
    """Validate a merge patch of asset `path_id`; raises AssetInvalid listing every problem."""
    if not isinstance(data, dict):
        raise AssetInvalid([FieldError("", "must be a JSON object (a JSON Merge Patch)")])
    errors = _removals(data)
    if "id" in data and data["id"] is not None and data["id"] != path_id:
        errors.append(FieldError("/id", f"must equal the asset id in the URL ({path_id})"))
    try:
        patch = validate_contract(AssetPatch, data, now=now)
    except AssetInvalid as exc:
        reported = {error.pointer for error in errors}
        errors += [error for error in exc.errors if error.pointer not in reported]
    if errors:
        raise AssetInvalid(truncated(errors))
    return patch


def normalized_patch(patch: AssetPatch) -> dict[str, Any]:
    """The JSON-ready patch as published: only the fields sent (nulls kept, they remove),
    values normalised as in a stored document."""
    normalized: dict[str, Any] = patch.model_dump(mode="json", exclude_unset=True)
    return normalized


# --- applying a patch onto the stored document (the reconciler) ---------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge member by member, `null` removes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


@dataclass(frozen=True, slots=True)
class PatchedDocument:
    document: dict[str, Any]
    content_hash: str


def patched_document(
    document: dict[str, Any], patch: dict[str, Any], *, asset_id: str, accepted_at: datetime
) -> PatchedDocument:
    """The normalised document `patch` makes of the stored `document`; raises AssetInvalid. The
    result is validated as a whole, as of the patch's acceptance (so the outcome never depends on
    when it is applied), and can neither change the asset's id nor be invalid."""
    merged = merge_patch(document, patch)
    if merged.get("id") != asset_id:
        raise AssetInvalid([FieldError("/id", "a patch cannot change or remove the asset's id")])
    result = normalized_document(parse_asset(merged, now=accepted_at))
    return PatchedDocument(result, content_hash_hex(result))
