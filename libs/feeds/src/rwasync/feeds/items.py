"""Validating raw records into feed items: the asset document's rules, once per new or changed
item (a record whose fingerprint matches the copy accepted last time skips this entirely), and
the size a push of the item alone could have (`MAX_ITEM_BYTES` unless told).

A valid item carries what the run needs and nothing more: id, version time, content hash, the
normalised document as canonical JSON bytes (what is hashed is what is published), and the price
it carries. An invalid item carries its errors, with pointers relative to the item.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from rwasync.feeds.records import RawRecord, line_id, scanned_id
from rwasync.schema.asset import ASSET_ID, parse_asset
from rwasync.schema.errors import (
    MAX_ITEM_BYTES,
    AssetInvalid,
    FieldError,
    item_too_large,
    json_pointer,
)
from rwasync.schema.feeds import shown_reason
from rwasync.schema.jsonsafe import MalformedJSON, loads
from rwasync.schema.valid_asset import (
    QuotedPrice,
    common_shape_json,
    from_model,
    validate_asset,
)

# An invalid item's id in the run's errors: some characters past the longest valid id.
MAX_SHOWN_ID_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class ValidItem:
    index: int
    asset_id: str
    updated_at: datetime
    content_hash: bytes
    # The normalised document as RFC 8785 canonical JSON: exactly the bytes that were hashed.
    document: bytes
    fingerprint: bytes
    price: QuotedPrice | None


@dataclass(frozen=True, slots=True)
class ItemError:
    """A feed item left out of the run: invalid, or superseded by a newer item with its id."""

    index: int
    asset_id: str | None
    errors: tuple[FieldError, ...]

    @property
    def stored_id(self) -> str | None:
        """The id of a stored asset this item could be, which it keeps from deletion: none when
        the id it carries breaks the id rule (`"a-1 "` with a blank, as a spreadsheet leaves it),
        so that the item counts as unidentified (the run holds before deleting anything) instead
        of protecting an asset that cannot exist while the one meant was deleted."""
        if self.asset_id is None or ASSET_ID.fullmatch(self.asset_id) is None:
            return None
        return self.asset_id

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": self.index}
        if self.asset_id is not None:
            # An id the id rule refuses is the feed's text, as long as its item and with any
            # character: it is shown cut and escaped, as a run's reason is.
            entry["id"] = self.stored_id or shown_reason(
                _without_surrogates(self.asset_id), MAX_SHOWN_ID_CHARS
            )
        entry["errors"] = [e.as_dict() for e in self.errors]
        return entry


def _without_surrogates(text: str) -> str:
    """`text` with U+FFFD for each lone surrogate: an id read from invalid UTF-8 keeps its bytes
    as surrogates, and a JSON escape can spell one, but no JSON (nor the run's jsonb) holds one."""
    if text.isascii():
        return text
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)


class _Unreadable(Exception):
    def __init__(self, error: FieldError, asset_id: str | None = None) -> None:
        self.error = error
        self.asset_id = asset_id


def csv_document(columns: tuple[str, ...], row: list[str]) -> dict[str, Any]:
    """A CSV row as an asset document: dotted paths nest, numeric segments index lists, an empty
    cell is absent. Cells stay text; the schema's numeric fields take numeric text exactly, and
    `attributes.*` stay strings."""
    if len(row) < len(columns):
        raise _Unreadable(FieldError("", f"has {len(row)} cells, the header names {len(columns)}"))
    if len(row) > len(columns):
        # (empty cells under the header's unnamed last columns were dropped with them)
        extra = next(n for n in range(len(row), len(columns), -1) if row[n - 1] != "")
        raise _Unreadable(
            FieldError(
                "",
                f"has text in cell {extra}, past the {len(columns)} columns the header names",
            )
        )
    tree: dict[str, Any] = {}
    for path, cell in zip(columns, row, strict=True):
        if cell == "":
            continue
        parts = path.split(".")
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unreadable(FieldError(json_pointer(parts), "is not valid UTF-8")) from None
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = cell
    # `attributes.*` name an attribute each, whatever its key looks like (`attributes.2024`)
    return {name: value if name == "attributes" else _lists(value) for name, value in tree.items()}


def _lists(node: Any) -> Any:
    """Objects whose keys are all indexes (ASCII digits: `²` is no index) become lists, in
    index order."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(key.isascii() and key.isdigit() for key in converted):
        # In number order without int(): the header's indexes have no leading zeros
        # (`csv_columns`), and a 5,000-digit one passed int's conversion limit (a ValueError
        # that ended the item's validation, and the run, as an internal error).
        return [converted[key] for key in sorted(converted, key=lambda k: (len(k), k))]
    return converted


def _unread_id(record: RawRecord) -> str | None:
    """The id of an item that is not read as a document: as the reader saw it, else as the text
    gives it (a JSON item framed many at a time, a JSON Lines line: neither read for its id)."""
    if record.raw_id is None and record.text is not None:
        return scanned_id(record.text)
    if record.raw_id is None and record.line is not None:
        return line_id(record.line)
    return record.raw_id


def _document(record: RawRecord) -> Any:
    try:
        if record.text is not None:
            return loads(record.text)
        if record.line is not None:
            return loads(record.line)
    except MalformedJSON as exc:
        # Its line and column count within the item, which the run's errors list by index.
        raise _Unreadable(FieldError("", exc.of_item(record.index)), _unread_id(record)) from None
    assert record.row is not None and record.columns is not None
    return csv_document(record.columns, record.row)


def _record_id(document: Any, fallback: str | None) -> str | None:
    if isinstance(document, dict) and isinstance(document.get("id"), str):
        return str(document["id"])
    return fallback


def validate_record(
    record: RawRecord, *, now: datetime, max_item_bytes: int = MAX_ITEM_BYTES
) -> ValidItem | ItemError:
    """Validate one record against the asset schema at the clock `now`; an item over
    `max_item_bytes` is invalid for that alone (a push of it would be refused as too large),
    listed by its id so that its stored asset is kept."""
    if record.larger_than(max_item_bytes):
        error = item_too_large(record.size(), max_item_bytes)
        return ItemError(record.index, _unread_id(record), (error,))
    text = record.text if record.text is not None else record.line
    # JSON of the common shape is read and validated in one go; other JSON, whose reading the
    # fast path has then declined, goes to the models, and CSV rows to `validate_asset`.
    asset = common_shape_json(text, now=now) if text is not None else None
    if asset is None:
        try:
            document = _document(record)
        except _Unreadable as exc:
            return ItemError(record.index, exc.asset_id or record.raw_id, (exc.error,))
        try:
            if text is None:
                asset = validate_asset(document, now=now)
            else:
                asset = from_model(parse_asset(document, now=now))
        except AssetInvalid as exc:
            return ItemError(record.index, _record_id(document, record.raw_id), tuple(exc.errors))
    return ValidItem(
        index=record.index,
        asset_id=asset.id,
        updated_at=asset.updated_at,
        content_hash=hashlib.sha256(asset.canonical).digest(),
        document=asset.canonical,
        fingerprint=record.fingerprint,
        price=asset.price,
    )
