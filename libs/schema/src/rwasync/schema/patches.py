"""JSON Merge Patch (RFC 7386) of an asset document, and the document a patch makes.

A patch is applied onto the stored, normalised document; the result must be a valid asset
document (validated as of the patch's acceptance, so the outcome never depends on when it is
applied), is normalised again and hashed. A patch can neither change the asset's id nor make it
invalid: `patched_document` raises `AssetInvalid` naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rwasync.schema.asset import (
    AssetInvalid,
    FieldError,
    content_hash_hex,
    normalized_document,
    parse_asset,
)


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
    """The normalised document `patch` makes of `document`; raises AssetInvalid."""
    merged = merge_patch(document, patch)
    if merged.get("id") != asset_id:
        raise AssetInvalid([FieldError("/id", "a patch cannot change or remove the asset's id")])
    result = normalized_document(parse_asset(merged, now=accepted_at))
    return PatchedDocument(result, content_hash_hex(result))
