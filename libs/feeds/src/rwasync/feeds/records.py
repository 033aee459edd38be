"""Format readers: a decoded feed body as a stream of raw records, each with a cheap fingerprint.

A reader never validates: it frames items (JSON envelope or bare array, JSON Lines, CSV) and
fingerprints each from its raw text, so that `items` can skip an item whose text equals the copy
accepted last time. Whatever breaks the file as a whole (not JSON, a broken CSV quote, an item
larger than `MAX_ITEM_CHARS`, nesting deeper than the parser goes) raises `FeedInvalid`; what
breaks one item (a JSON Lines line that does not parse, a CSV row of the wrong width, invalid
UTF-8 in a line or cell) is left for validation to report against that item alone.

JSON items are framed by the standard library's C scanner (`raw_decode`), with numbers kept as
their text: it gives each item's exact span, and no number, however long, is converted here. Once
two items have shown how the feed separates its items, most of them are framed many at a time
instead (`_JsonText.whole_items`): msgspec checks a stretch of items as one JSON array and hands
back each one's exact bytes, in C, without building any value. The stretch ends where the text
read last shows the separator; msgspec only confirms a stretch that is whole items, so any
doubt (a separator inside a string or a nested list, text msgspec reads differently, a broken
item) sends the next item to the C scanner as before.

Sections: what every reader yields (`fingerprint`, `RawRecord`, `FeedHeader`, `FeedReader`);
JSON (`_JsonText`, the framer; `_json_items`, `_envelope`, `_json_document`); JSON Lines (and
`line_id`, a refused line's id); CSV;
then `read_records`, which picks the reader for a feed's format.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

import msgspec

from rwasync.schema.feeds import FeedFormat, ReasonCode, shown_reason
from rwasync.schema.jsonsafe import MAX_DEPTH, MalformedJSON, loads

# Changing what a fingerprint covers (or how items are validated and normalised) must change
# this, so that fingerprints from before never vouch for an item.
FINGERPRINT_VERSION: Final = b"rwasync-feed-item-2\x00"
READ_BYTES: Final = 1024 * 1024
# An item (a JSON value, a line, a CSV row) larger than this breaks the file.
MAX_ITEM_CHARS: Final = 16 * 1024 * 1024
# The csv module refuses a cell over 128 KiB by default, which failed the whole run over one
# long description (security trial): a cell may be as long as an item may be, and a row over
# the item limit is invalid as that item alone. (The limit is the module's, process-wide.)
csv.field_size_limit(MAX_ITEM_CHARS)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# An error this close to the end of the text read may only mean the token goes on (`-Infinity`,
# a `\uXXXX` escape, a number's exponent).
_LONGEST_TOKEN: Final = 16
# What starts an item as a feed writes it: `{`, then its first key and the colon.
_ITEM_HEAD: Final = re.compile(r'\{[ \t\n\r]*"[A-Za-z0-9_]{1,64}"[ \t\n\r]*:')


class _Number(str):
    """A JSON number as the framer reads it: its text, told apart from a string (an item's id
    of 123 was read as the id "123" when the item was framed alone, and as no id when framed
    with others or in JSON Lines: moving an item flipped a run between ok and held)."""

    __slots__ = ()


_SCANNER: Final = json.JSONDecoder(parse_int=_Number, parse_float=_Number).raw_decode
_STRETCH: Final = msgspec.json.Decoder(list[msgspec.Raw])
# A stretch msgspec refuses costs a parse of up to the text read: after this many, the feed is
# framed item by item to its end.
_MAX_REFUSED_STRETCHES: Final = 8


# --- what every reader yields ---------------------------------------------------------------


class FeedInvalid(Exception):
    """The feed as a whole cannot be used; `reason_code` says why, as the run records it."""

    def __init__(self, reason_code: ReasonCode, reason: str) -> None:
        reason = shown_reason(reason)  # it may quote the feed: a CSV header cell, a character
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


def fingerprint(kind: bytes, raw: bytes) -> bytes:
    return hashlib.blake2b(FINGERPRINT_VERSION + kind + raw, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One item as read, not validated. Exactly one of `text` (a JSON value's text), `line`
    (a JSON Lines line) or `row` (CSV cells, with `columns`) is set."""

    index: int
    fingerprint: bytes
    # The item's id as far as the reader could see it (None: no string id, or not parsed yet,
    # as for JSON items framed in a stretch: `scanned_id` reads it from `text` if needed).
    raw_id: str | None = None
    text: str | None = None
    line: bytes | None = None
    row: list[str] | None = None
    columns: tuple[str, ...] | None = None

    def size(self) -> int:
        """The item's bytes as the feed carries it; a CSV row's, its cells' and a separator
        between each (quotes left out)."""
        if self.line is not None:
            return len(self.line)
        if self.text is not None:
            return len(self.text.encode("utf-8", "surrogateescape"))
        cells = self.row or []
        return sum(len(cell.encode("utf-8", "surrogateescape")) for cell in cells) + max(
            0, len(cells) - 1
        )

    def larger_than(self, limit: int) -> bool:
        """Whether `size()` is over `limit`; an item whose characters could not make that many
        bytes (a character is 1 to 4) is not encoded to find out."""
        if self.line is not None:
            return len(self.line) > limit
        characters = (
            len(self.text) if self.text is not None else sum(len(c) + 1 for c in self.row or [])
        )
        if characters * 4 <= limit:
            return False
        return self.size() > limit


@dataclass
class FeedHeader:
    """What the feed says about itself (JSON envelope only), known once it has been read."""

    timestamp: Any = None
    total_assets: Any = None
    enveloped: bool = False


@dataclass
class FeedReader:
    """Iterate `records`; `header` is complete once they are exhausted."""

    records: Iterator[RawRecord]
    header: FeedHeader = field(default_factory=FeedHeader)


# --- JSON -------------------------------------------------------------------------------------


class _JsonText:
    """Decoded text read in pieces, with the C scanner's `raw_decode` framing values in it."""

    def __init__(self, stream: IO[bytes], read_bytes: int = READ_BYTES) -> None:
        self._stream = stream
        self._read_bytes = read_bytes
        # Invalid UTF-8 is kept as lone surrogates, so only the item carrying it fails; a byte
        # order mark that some exporters put first is dropped.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("surrogateescape")
        self._scan = _SCANNER
        self.text = ""
        self.pos = 0
        # Characters of the body before `text` (read and let go): where `text` starts in it; the
        # line breaks among them, and where the line `text` starts in began (to place a fault).
        self.dropped = 0
        self.dropped_lines = 0
        self.line_start = 0
        self.eof = False
        # Pieces read so far, and stretches msgspec refused (in all, and since the last piece).
        self.fills = 0
        self.refused = 0
        self.refused_in_fill = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self._stream.read(self._read_bytes)
        final = not data
        decoded = self._decoder.decode(data, final=final)
        breaks = self.text.count("\n", 0, self.pos)
        if breaks:
            self.dropped_lines += breaks
            self.line_start = self.dropped + self.text.rfind("\n", 0, self.pos) + 1
        self.dropped += self.pos
        self.text = self.text[self.pos :] + decoded
        self.pos = 0
        self.eof = final
        self.fills += 1
        self.refused_in_fill = False
        return True

    def peek(self) -> str:
        """The next non-whitespace character, "" at the end."""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str, what: str) -> str:
        found = self.peek()
        if not found or found not in chars:
            shown = repr(found) if found else "the end of the body"
            raise FeedInvalid(ReasonCode.PARSE_ERROR, f"expected {what}, found {shown}")
        self.pos += 1
        return found

    def whole_items(self, separator: str) -> list[msgspec.Raw]:
        """The items from here (an item's first character) to the last `separator` in the text
        read, each as its exact bytes, when msgspec confirms they are whole items; [] when not
        (the caller frames the next item with `value`)."""
        if self.refused >= _MAX_REFUSED_STRETCHES or self.refused_in_fill:
            return []
        start, text = self.pos, self.text
        cut = text.rfind(separator, start)
        if cut <= start:
            return []
        try:
            # `}` ends the stretch's last item; what follows it starts the next one.
            items = _STRETCH.decode("[" + text[start : cut + 1] + "]")
        except (msgspec.DecodeError, UnicodeEncodeError, RecursionError):
            # The separator was inside a string or a nested list, or msgspec reads the text
            # otherwise: the C scanner decides, until the next piece is read.
            self.refused += 1
            self.refused_in_fill = True
            return []
        self.pos = cut + 1
        return items

    def value(self) -> tuple[Any, str]:
        """The next JSON value (numbers as text) and its exact text."""
        self.peek()
        while True:
            try:
                obj, end = self._scan(self.text, self.pos)
            except json.JSONDecodeError as exc:
                # The text read so far may end inside the value (a string, a literal, an escape, a
                # number): read on. A real error is one with more text after it.
                incomplete = exc.msg.startswith("Unterminated") or (
                    exc.pos >= len(self.text) - _LONGEST_TOKEN
                )
                if incomplete and not self.eof:
                    self._grow()
                    continue
                line, column = self._place(exc.pos)
                raise FeedInvalid(
                    ReasonCode.PARSE_ERROR,
                    f"the feed is not valid JSON: {exc.msg.removesuffix(' at')} "
                    f"at line {line} column {column}",
                ) from None
            except RecursionError:
                raise FeedInvalid(
                    ReasonCode.PARSE_ERROR, "the feed nests too deep to read"
                ) from None
            if end >= len(self.text) and not self.eof:
                self._grow()  # a number at the end of the buffer may go on in the next piece
                continue
            span = self.text[self.pos : end]
            self.pos = end
            return obj, span

    def _place(self, position: int) -> tuple[int, int]:
        """(line, column) in the whole body, both from 1, of character `position` of `text`, as
        every other refusal of JSON says where it is."""
        line = self.dropped_lines + self.text.count("\n", 0, position) + 1
        newline = self.text.rfind("\n", 0, position)
        if newline >= 0:
            return line, position - newline
        return line, self.dropped + position - self.line_start + 1

    def _grow(self) -> None:
        if len(self.text) - self.pos > MAX_ITEM_CHARS:
            raise FeedInvalid(
                ReasonCode.SIZE_LIMIT, f"an item is larger than {MAX_ITEM_CHARS} characters"
            )
        self._fill()


def _json_items(reader: _JsonText, start: int) -> Iterator[RawRecord]:
    """The items of an array whose `[` was just consumed."""
    index = start
    if reader.peek() == "]":
        reader.pos += 1
        return
    # How this feed separates an item from the next one's first key (`},{"id":`), once seen.
    separator: str | None = None
    while True:
        stretch = reader.whole_items(separator) if separator is not None else []
        for raw in stretch:
            item = bytes(raw)
            yield RawRecord(
                index=index, fingerprint=fingerprint(b"json\x00", item), text=item.decode()
            )
            index += 1
        # Where an item framed alone ended, and how many pieces had been read then: to learn
        # the separator from the text after it (until it is known).
        learn_after: tuple[int, int] | None = None
        if not stretch:
            obj, span = reader.value()
            if separator is None and span.endswith("}"):
                learn_after = (reader.pos, reader.fills)
            yield RawRecord(
                index=index,
                fingerprint=fingerprint(b"json\x00", span.encode("utf-8", "surrogateescape")),
                raw_id=_string_id(obj),
                text=span,
            )
            index += 1
        if reader.expect(",]", "',' or ']' between items") == "]":
            return
        if learn_after is not None:
            separator = _separator(reader, *learn_after)


def _separator(reader: _JsonText, end: int, fills: int) -> str | None:
    """The separator between the item that ended at `end` and the next (whose `,` was just
    consumed): the text in between and the next item's head, if no piece was read since (the
    text before `end` is then still there) and the next item starts as `_ITEM_HEAD` says."""
    if not reader.peek() or reader.fills != fills:
        return None
    head = _ITEM_HEAD.match(reader.text, reader.pos)
    return None if head is None else "}" + reader.text[end : reader.pos] + head.group()


def _string_id(obj: Any) -> str | None:
    """An item's `id` as the framer records it: a string under `id` of an object, else None
    (a number is no id, wherever the item stands)."""
    raw_id = obj.get("id") if isinstance(obj, dict) else None
    return raw_id if type(raw_id) is str else None


def scanned_id(text: str) -> str | None:
    """The id a JSON item's text gives as the C scanner reads it (what the framer records as
    `raw_id`), for an item framed many at a time whose text turns out unreadable by the
    schema's reader; None if it gives none."""
    try:
        obj, _ = _SCANNER(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return _string_id(obj)


def _envelope(reader: _JsonText, header: FeedHeader) -> Iterator[RawRecord]:
    """`{"timestamp": ..., "total_assets": N, "assets": [...]}`, keys in any order."""
    header.enveloped = True
    seen_assets = False
    if reader.peek() == "}":
        reader.pos += 1
    else:
        while True:
            key, _ = reader.value()
            if not isinstance(key, str):
                raise FeedInvalid(ReasonCode.PARSE_ERROR, "the envelope's keys must be strings")
            reader.expect(":", "':' after a key")
            if key == "assets":
                if seen_assets:
                    raise FeedInvalid(ReasonCode.PARSE_ERROR, "`assets` appears twice")
                seen_assets = True
                reader.expect("[", "`assets` to be an array")
                yield from _json_items(reader, 0)
            else:
                _, span = reader.value()
                if key in ("timestamp", "total_assets"):
                    try:
                        setattr(header, key, loads(span))
                    except MalformedJSON as exc:  # its place in the span would mislead
                        raise FeedInvalid(
                            ReasonCode.PARSE_ERROR, f"`{key}`: {exc.reason}"
                        ) from None
            if reader.expect(",}", "',' or '}' in the envelope") == "}":
                break
    missing = [
        name
        for name, present in (
            ("timestamp", header.timestamp is not None),
            ("total_assets", header.total_assets is not None),
            ("assets", seen_assets),
        )
        if not present
    ]
    if missing:
        raise FeedInvalid(
            ReasonCode.PARSE_ERROR,
            f"the feed envelope lacks {', '.join(f'`{k}`' for k in missing)}",
        )


def _json_document(reader: _JsonText, header: FeedHeader) -> Iterator[RawRecord]:
    first = reader.expect("{[", 'a JSON object {"timestamp", "total_assets", "assets"} or array')
    if first == "{":
        yield from _envelope(reader, header)
    else:
        yield from _json_items(reader, 0)
    if reader.peek():
        raise FeedInvalid(ReasonCode.PARSE_ERROR, "unexpected data after the end of the feed")


# --- JSON Lines -------------------------------------------------------------------------------


# An object's leading `"id": "..."`: all that can be read of a JSON Lines line cut off later.
_LEADING_ID: Final = re.compile(
    r'[ \t\r\n]*\{[ \t\r\n]*"id"[ \t\r\n]*:[ \t\r\n]*"([^"\\\x00-\x1f]*)"'  # JSON's whitespace only
)


def line_id(line: bytes) -> str | None:
    """The id of a JSON Lines line that the schema's reader refused (a long number, deep
    nesting, invalid UTF-8, a lone surrogate, a line cut off), so that the item is listed by it
    and its stored asset is not deleted: as `scanned_id` reads it (invalid UTF-8 kept as
    surrogates, as the JSON formats read it), else the id the line opens with; None if neither."""
    text = line.decode("utf-8", "surrogateescape")
    found = scanned_id(text)
    if found is None and (match := _LEADING_ID.match(text)) is not None:
        found = match.group(1)
    return found


def _json_lines(stream: IO[bytes]) -> Iterator[RawRecord]:
    index = 0
    first = True
    while True:
        line = stream.readline(MAX_ITEM_CHARS + 1)
        if not line:
            return
        if first:
            # A byte order mark that some exporters put first would make the first line an
            # invalid item whose id cannot be read, and so its stored asset a deletion.
            line = line.removeprefix(codecs.BOM_UTF8)
            first = False
        if len(line) > MAX_ITEM_CHARS and not line.endswith(b"\n"):
            raise FeedInvalid(
                ReasonCode.SIZE_LIMIT, f"line {index + 1} is longer than {MAX_ITEM_CHARS} bytes"
            )
        line = line.strip(b" \t\r\n")
        if not line:
            continue  # blank lines carry no item
        yield RawRecord(index=index, fingerprint=fingerprint(b"jsonl\x00", line), line=line)
        index += 1


# --- CSV --------------------------------------------------------------------------------------

_SEGMENT = re.compile(r"^[^.\s]+$")


def _named_path(path: str) -> str:
    """The path a column names, its list indexes written without leading zeros: `media.01.url`
    and `media.1.url` are one column named twice (both were kept, as two list elements: hybrid
    trial). Under `attributes` every key is a name, `01` as much as `1`."""
    parts = path.split(".")
    if parts[0] == "attributes":
        return path
    # (zeros stripped, not int(): a 5,000-digit index would pass int's conversion limit)
    return ".".join(
        (part.lstrip("0") or "0") if part.isascii() and part.isdigit() else part for part in parts
    )


def csv_columns(header: list[str]) -> tuple[str, ...]:
    """The header's dotted paths, checked (non-empty segments, unique, none inside another),
    as the fields they name: list indexes without leading zeros, so that `media.0.url` and
    `media.00.kind` fill one list element (they made two: security trial)."""
    columns = tuple(cell.strip() for cell in header)
    if not columns or columns == ("",):
        raise FeedInvalid(ReasonCode.PARSE_ERROR, "the CSV feed has no header row")
    seen: dict[str, str] = {}  # each column by the path it names (`media.01.url`: media.1.url)
    for number, path in enumerate(columns, start=1):
        if not path or not all(_SEGMENT.match(part) for part in path.split(".")):
            raise FeedInvalid(
                ReasonCode.PARSE_ERROR,
                f"CSV header column {number} ({path!r}) is not a dotted path such as token.symbol",
            )
        if path.count(".") >= MAX_DEPTH:
            # As deep as a JSON item may nest, no deeper: 500 parts made every row's document
            # a RecursionError, a run's internal error and a preview's 500 (hostile trial).
            raise FeedInvalid(
                ReasonCode.PARSE_ERROR,
                f"CSV header column {number} names a path of more than {MAX_DEPTH} parts",
            )
        named = _named_path(path)
        if named in seen:
            also = "" if seen[named] == path else f" (as {seen[named]!r} and {path!r})"
            raise FeedInvalid(ReasonCode.PARSE_ERROR, f"CSV header names {named!r} twice{also}")
        seen[named] = path
    for named, path in seen.items():
        parts = named.split(".")
        for cut in range(1, len(parts)):
            if (prefix := ".".join(parts[:cut])) in seen:
                raise FeedInvalid(
                    ReasonCode.PARSE_ERROR,
                    f"CSV header names both {seen[prefix]!r} and {path!r}",
                )
    if "id" not in seen:
        raise FeedInvalid(ReasonCode.PARSE_ERROR, "the CSV header has no `id` column")
    return tuple(seen)


def _csv_rows(stream: IO[bytes]) -> Iterator[RawRecord]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    rows = csv.reader(text, strict=True)
    try:
        header = next(rows, None)
        if header is None:
            raise FeedInvalid(ReasonCode.PARSE_ERROR, "the CSV feed is empty: no header row")
        # A spreadsheet's export can end with empty columns, named in no header cell: they
        # are left out, with the empty cells rows have in them.
        named = len(header)
        while named > 1 and not header[named - 1].strip():
            named -= 1
        columns = csv_columns(header[:named])
        kind = b"csv\x00" + "\x1f".join(columns).encode("utf-8", "surrogateescape") + b"\x00"
        id_column = columns.index("id")
        index = 0
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue  # a blank line, or a spreadsheet's empty row (`,,,`)
            if len(row) > named and not any(row[named:]):
                del row[named:]
            raw_id = row[id_column] if id_column < len(row) and row[id_column] else None
            yield RawRecord(
                index=index,
                fingerprint=fingerprint(kind, repr(row).encode("utf-8", "surrogatepass")),
                raw_id=raw_id,
                row=row,
                columns=columns,
            )
            index += 1
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise FeedInvalid(
                ReasonCode.SIZE_LIMIT,
                f"a CSV cell at line {rows.line_num} is larger than {MAX_ITEM_CHARS} characters",
            ) from None
        raise FeedInvalid(
            ReasonCode.PARSE_ERROR, f"the CSV is malformed at line {rows.line_num}: {exc}"
        ) from None


def read_records(
    fmt: FeedFormat | str, stream: IO[bytes], *, read_bytes: int = READ_BYTES
) -> FeedReader:
    """A reader of the decoded body `stream` in format `fmt` (a bare JSON array and a JSON
    envelope are both `json`, told apart by their first character)."""
    header = FeedHeader()
    match FeedFormat(fmt):
        case FeedFormat.JSON:
            return FeedReader(_json_document(_JsonText(stream, read_bytes), header), header)
        case FeedFormat.JSONL:
            return FeedReader(_json_lines(stream), header)
        case FeedFormat.CSV:
            return FeedReader(_csv_rows(stream), header)
