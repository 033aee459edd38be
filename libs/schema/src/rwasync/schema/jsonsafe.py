"""JSON in and out for untrusted bodies: decimals kept exact, abusive documents refused.

`loads` is the only way rwasync parses a provider's JSON: numbers become `int` or `Decimal` (never
float), and text that is not well-formed, nests too deep, hides unpaired surrogates or carries
absurdly long numbers is a `MalformedJSON` (HTTP 400), before any validation runs. It says where:
the line and column of the first fault, and for a batch which of its items holds it.
"""

import json
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NoReturn

import orjson

from rwasync.schema.decimals import normalize_decimal
from rwasync.schema.timestamps import timestamp_text

MAX_DEPTH: Final = 32
MAX_NUMBER_DIGITS: Final = 100
# A refusal inside an element of a batch's array names it only among the first this many: no
# batch holds more (ingest-api's take 5,000 assets or 10,000 prices), and one that does is
# refused for its length anyway. Reading elements one by one costs a call each: this bounds it.
MAX_NAMED_ITEMS: Final = 10_000

# A `\uD800`-`\uDFFF` escape somewhere in the text: only then can a decoded string hold a lone
# surrogate (raw ones are refused by the UTF-8 decoder), so only then are strings inspected.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class MalformedJSON(Exception):
    """The body is not acceptable JSON. `reason` says why; `line` and `column` (1-based, in
    characters) where, when known; `item` which element of a batch's array of items (`items`,
    such as `assets`) holds the fault, when one does. `detail` says it all in words fit for a 400
    response: "<reason> at line L column C[, in item N of <items>]"."""

    def __init__(
        self,
        reason: str,
        *,
        line: int | None = None,
        column: int | None = None,
        item: int | None = None,
        items: str | None = None,
    ) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.item = item
        self.items = items
        super().__init__(self.detail)

    @property
    def place(self) -> str:
        """Where the fault is, as `at line L column C` after a space; empty when not known."""
        return "" if self.line is None else f" at line {self.line} column {self.column}"

    @property
    def detail(self) -> str:
        within = "" if self.item is None else f", in item {self.item} of {self.items}"
        return f"{self.reason}{self.place}{within}"

    def of_item(self, index: int) -> str:
        """The detail for a text that is itself item `index` of something (a feed's item, read
        on its own): its line and column count within the item."""
        return f"{self.reason}{self.place} of item {index}"


def _refuse_long_number(literal: str) -> None:
    if len(literal) > MAX_NUMBER_DIGITS and sum(c.isdigit() for c in literal) > MAX_NUMBER_DIGITS:
        raise MalformedJSON(f"a number has more than {MAX_NUMBER_DIGITS} digits")


def _parse_int(literal: str) -> int:
    _refuse_long_number(literal)
    return int(literal)


def parse_decimal(literal: str) -> Decimal:
    _refuse_long_number(literal)
    try:
        return Decimal(literal)
    except InvalidOperation:  # an exponent beyond what Decimal can represent
        raise MalformedJSON(f"number {literal[:40]} is out of range") from None


_CONSTANTS: Final = ("NaN", "Infinity", "-Infinity")


def _refuse_constant(name: str) -> NoReturn:
    raise MalformedJSON(f"{name} is not a JSON number")


_TOO_DEEP: Final = f"JSON nests deeper than {MAX_DEPTH} levels"
_UNPAIRED_SURROGATE: Final = "JSON contains an unpaired surrogate (\\ud800-\\udfff)"


def _check_structure(document: Any, *, check_strings: bool) -> None:
    """Depth at most MAX_DEPTH (objects and arrays) and, if asked, no lone surrogates."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DEPTH:
                raise MalformedJSON(_TOO_DEEP)
            for key, value in node.items():
                if check_strings:
                    _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                raise MalformedJSON(_TOO_DEEP)
            stack.extend((value, depth + 1) for value in node)
        elif check_strings and isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedJSON(_UNPAIRED_SURROGATE) from None


def _raw_text_fault(text: str) -> tuple[str, int] | None:
    """Text handed over decoded: a feed's, whose undecodable bytes were kept as surrogates
    U+DC80-U+DCFF (`surrogateescape`), which is what such a surrogate there says. The reason
    and the offending character's position, or None for text that is fine."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        if "\udc80" <= char <= "\udcff":
            return f"text is not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02x})", exc.start
        return _UNPAIRED_SURROGATE, exc.start
    return None


def loads(body: bytes | str, *, items: str | None = None) -> Any:
    """Parse untrusted JSON; numbers are `int` or `Decimal`. Raises `MalformedJSON`, placed at
    its line and column; with `items` (the key of a batch's array of items, as in
    `{"assets": [...]}`), a fault inside one of that array's elements also names the element."""
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # The text before the bad byte is valid: its length is the bad byte's position.
            before = raw[: exc.start].decode("utf-8").removeprefix("\ufeff")
            readable = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
            raise _placed(
                f"text is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                len(before),
                text=readable,
                items=items,
            ) from None
        # A byte order mark, which some tools write first, is ignored (RFC 8259 8.1 allows it).
        text = text.removeprefix("\ufeff")
    else:
        text = body
        fault = _raw_text_fault(text)
        if fault is not None:
            raise _placed(*fault, text=text, items=items)
    try:
        document = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=parse_decimal,
            parse_constant=_refuse_constant,
        )
    except json.JSONDecodeError as exc:
        # "Unterminated string starting at" names its position after it, as this does
        reason = f"invalid JSON: {exc.msg.removesuffix(' at')}"
        raise _placed(reason, exc.pos, text=text, items=items) from None
    except RecursionError:
        raise _placed(_TOO_DEEP, _too_deep_at(text), text=text, items=items) from None
    except MalformedJSON as exc:  # a number or constant the hooks refused
        raise _placed(exc.reason, _refused_literal_at(text), text=text, items=items) from None
    check_strings = _SURROGATE_ESCAPE.search(text) is not None
    # Nesting never exceeds the number of brackets in the text: a document with few of them
    # (nearly every one) needs no walk unless its strings must be inspected.
    if check_strings or text.count("{") + text.count("[") > MAX_DEPTH:
        try:
            _check_structure(document, check_strings=check_strings)
        except MalformedJSON as exc:
            at = _too_deep_at(text) if exc.reason == _TOO_DEEP else _lone_surrogate_at(text)
            raise _placed(exc.reason, at, text=text, items=items) from None
    return document


# --- where a fault is ----------------------------------------------------------------------
# Only a refused text pays for these, and none costs more than about one more parse of it: each
# looks for the first fault of its kind in the text, which is the one `loads` met (it reads the
# text in order, and checks depth and strings only once all of it parsed).


def _placed(reason: str, position: int | None, *, text: str, items: str | None) -> MalformedJSON:
    """The MalformedJSON for `reason` at character `position` of `text` (None: not found)."""
    if position is None:
        return MalformedJSON(reason)
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    item = None if items is None else _item_at(text, position, items)
    return MalformedJSON(reason, line=line, column=column, item=item, items=items)


# What comes before the next bracket (or literal that the hooks might refuse) outside strings,
# strings included, matched in C: possessive, so a text without one more is given up at once
# rather than backtracked over.
_STRING: Final = r'"(?:[^"\\]++|\\.)*+"'
_NEXT_BRACKET: Final = re.compile(rf"(?:[^\"\[\]{{}}]++|{_STRING})*+([\[\]{{}}])")
_LITERAL: Final = r"-?[0-9][0-9.eE+\-]*+"
# A number is refused only with over 100 digits or an exponent of 19 digits or more (which
# Decimal cannot hold): shorter literals, nearly all, are passed over without a look.
_REFUSABLE: Final = r"NaN|-?Infinity|-?[0-9][0-9.eE+\-]{18,}+"
_NEXT_REFUSABLE: Final = re.compile(
    rf"(?:[^\"\-0-9NI]++|{_STRING}|(?!{_REFUSABLE}){_LITERAL})*+({_REFUSABLE})"
)
# Text read escape by escape (so that `\\\\ud800` is a backslash and text), a pair of surrogate
# escapes at once, up to the first other surrogate escape.
_LONE_SURROGATE: Final = re.compile(
    r"(?:\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|[^\\]++|\\[^u]|\\u(?![dD][89a-fA-F]))*+"
    r"(\\u[dD][89a-fA-F][0-9a-fA-F]{2})"
)


def _too_deep_at(text: str) -> int | None:
    """The first `[` or `{` that opens a level deeper than MAX_DEPTH."""
    depth = 0
    for match in _NEXT_BRACKET.finditer(text):
        if match.group(1) in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start(1)
        else:
            depth -= 1
    return None


def _refused_literal_at(text: str) -> int | None:
    """The first number or constant that the hooks of `loads` refuse."""
    for match in _NEXT_REFUSABLE.finditer(text):
        literal = match.group(1)
        try:
            if literal in _CONSTANTS:
                _refuse_constant(literal)
            elif "." in literal or "e" in literal or "E" in literal:
                parse_decimal(literal)
            else:
                _parse_int(literal)
        except MalformedJSON:
            return match.start(1)
    return None


def _lone_surrogate_at(text: str) -> int | None:
    """The first `\\uD800`-`\\uDFFF` escape not paired as the decoder pairs them (a high one
    followed at once by a low one), in text that parsed: a backslash there is in a string."""
    found = _LONE_SURROGATE.match(text)
    return None if found is None else found.start(1)


_SCAN: Final = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=str).raw_decode
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")


def _skip(text: str, position: int) -> int:
    return _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]


def _item_at(text: str, position: int, items: str) -> int | None:
    """Which element of the array under the top-level key `items` holds `position`, reading the
    text (in C, value by value) only as far as that; None where it lies elsewhere: between
    elements, outside the array, in a document of another shape."""
    at = _skip(text, 0)
    if not text.startswith("{", at):
        return None
    try:
        at = _skip(text, at + 1)
        while at <= position and text.startswith('"', at):
            key, at = _SCAN(text, at)
            at = _skip(text, at)
            if not text.startswith(":", at):
                return None
            at = _skip(text, at + 1)
            if key == items and text.startswith("[", at):
                item, after = _element_at(text, at + 1, position)
                if after is None:
                    return item
                at = after
            else:
                at = _SCAN(text, at)[1]  # raises for a broken value: the fault is there
            at = _skip(text, at)
            if at > position or not text.startswith(",", at):
                return None
            at = _skip(text, at + 1)
    except (json.JSONDecodeError, RecursionError):
        pass
    return None


def _element_at(text: str, at: int, position: int) -> tuple[int | None, int | None]:
    """The index of the element that holds `position` in the array opened just before `at`
    (None: no element does, or one past the first MAX_NAMED_ITEMS); and where the text goes on
    after the array, if it closes before `position`."""
    at = _skip(text, at)
    if text.startswith("]", at):  # empty
        return None, (at + 1 if at < position else None)
    index = 0
    while at <= position and index < MAX_NAMED_ITEMS:
        if at == len(text) or text[at] in ",]}":
            return None, None  # no element where one should be: the array is at fault
        try:
            end = _SCAN(text, at)[1]
        except (json.JSONDecodeError, RecursionError):
            return index, None  # the first element that does not read holds the first fault
        if position < end:
            return index, None
        at = _skip(text, end)
        if text.startswith("]", at) and at < position:
            return None, at + 1
        if not text.startswith(",", at):
            return None, None
        at = _skip(text, at + 1)
        index += 1
    return None, None


def _encode_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return normalize_decimal(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("a naive datetime has no defined instant; attach a timezone")
        return timestamp_text(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(document: Any) -> bytes:
    """Serialize with decimals as normalised strings and timestamps as `timestamp_text`."""
    try:
        return orjson.dumps(
            document, default=_encode_default, option=orjson.OPT_PASSTHROUGH_DATETIME
        )
    except TypeError:
        # orjson refuses integers beyond 64 bits (such as the schema's 10^30 supply bound);
        # the standard library writes them exactly, and as compactly.
        return json.dumps(
            document, default=_encode_default, ensure_ascii=False, separators=(",", ":")
        ).encode()
