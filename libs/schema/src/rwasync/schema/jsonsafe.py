"""JSON in and out for untrusted bodies: decimals kept exact, abusive documents refused.

`loads` is the only way rwasync parses a provider's JSON: numbers become `int` or `Decimal` (never
float), and text that is not well-formed, nests too deep, hides unpaired surrogates or carries
absurdly long numbers is a `MalformedJSON` (HTTP 400), before any validation runs.
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

# A `\uD800`-`\uDFFF` escape somewhere in the text: only then can a decoded string hold a lone
# surrogate (raw ones are refused by the UTF-8 decoder), so only then are strings inspected.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class MalformedJSON(Exception):
    """The body is not acceptable JSON; `detail` says why, in words fit for a 400 response."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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


def _refuse_constant(name: str) -> NoReturn:
    raise MalformedJSON(f"{name} is not a JSON number")


def _check_structure(document: Any, *, check_strings: bool) -> None:
    """Depth at most MAX_DEPTH (objects and arrays) and, if asked, no lone surrogates."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DEPTH:
                raise MalformedJSON(f"JSON nests deeper than {MAX_DEPTH} levels")
            for key, value in node.items():
                if check_strings:
                    _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                raise MalformedJSON(f"JSON nests deeper than {MAX_DEPTH} levels")
            stack.extend((value, depth + 1) for value in node)
        elif check_strings and isinstance(node, str):
            _check_text(node)


_UNPAIRED_SURROGATE: Final = "JSON contains an unpaired surrogate (\\ud800-\\udfff)"


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedJSON(_UNPAIRED_SURROGATE) from None


def _check_raw_text(text: str) -> None:
    """Text handed over decoded: a feed's, whose undecodable bytes were kept as surrogates
    U+DC80-U+DCFF (`surrogateescape`), which is what such a surrogate there says."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        if "\udc80" <= char <= "\udcff":
            raise MalformedJSON(
                f"text is not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02x} at character "
                f"{exc.start + 1})"
            ) from None
        raise MalformedJSON(_UNPAIRED_SURROGATE) from None


def loads(body: bytes | str) -> Any:
    """Parse untrusted JSON; numbers are `int` or `Decimal`. Raises `MalformedJSON`."""
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = exc.object[exc.start]
            raise MalformedJSON(
                f"text is not valid UTF-8 (byte 0x{bad:02x} at byte {exc.start + 1})"
            ) from None
        # A byte order mark, which some tools write first, is ignored (RFC 8259 8.1 allows it).
        text = text.removeprefix("\ufeff")
    else:
        text = body
        _check_raw_text(text)
    try:
        document = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=parse_decimal,
            parse_constant=_refuse_constant,
        )
    except json.JSONDecodeError as exc:
        raise MalformedJSON(
            # "Unterminated string starting at" names its position after it, as this does
            f"invalid JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MalformedJSON(f"JSON nests deeper than {MAX_DEPTH} levels") from None
    check_strings = _SURROGATE_ESCAPE.search(text) is not None
    # Nesting never exceeds the number of brackets in the text: a document with few of them
    # (nearly every one) needs no walk unless its strings must be inspected.
    if check_strings or text.count("{") + text.count("[") > MAX_DEPTH:
        _check_structure(document, check_strings=check_strings)
    return document


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
        # the standard library writes them exactly.
        return json.dumps(document, default=_encode_default, ensure_ascii=False).encode()
