"""Request bodies and the problems they can cause, checked in this order: media type (415),
size (413), arrival in time (408), JSON (400). Validation against the contracts (422) comes
after, in `documents`."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiohttp import web
from aiohttp.helpers import parse_mimetype

from rwasync.platform.http import (
    BodyBroken,
    Problem,
    bad_query,
    optional_query,
    query_timestamp,
    send_continue,
)
from rwasync.schema import jsonsafe
from rwasync.schema.errors import FieldError, error_count

JSON: Final = "application/json"
MERGE_PATCH: Final = "application/merge-patch+json"
JSON_LINES: Final = ("application/x-ndjson", "application/jsonl", "application/jsonlines")
CSV: Final = "text/csv"
JSON_CHARSETS: Final = frozenset({"utf-8", "utf8"})
# What a body of each text media type is, as a refused charset names it (a feed previewed by
# body may be CSV or JSON Lines: "JSON must be UTF-8" would name the wrong format).
TEXT_FORMATS: Final = {JSON: "JSON", MERGE_PATCH: "JSON", CSV: "CSV"} | dict.fromkeys(
    JSON_LINES, "JSON Lines"
)


def not_found(detail: str) -> Problem:
    return Problem(404, "Not Found", detail, kind="not-found")


def bad_request(detail: str, kind: str = "bad-request") -> Problem:
    return Problem(400, "Bad Request", detail, kind=kind)


def invalid_document(what: str, errors: list[FieldError]) -> Problem:
    total = error_count(errors)
    count = f"{total} error" + ("" if total == 1 else "s")
    return Problem(
        422,
        "Unprocessable Content",
        f"the {what} is invalid ({count}); see errors",
        kind=f"invalid-{what.replace(' ', '-')}",
        errors=[error.as_dict() for error in errors],
    )


def _closing(problem: Problem) -> Problem:
    # The rest of the body is not read: the connection cannot carry another request.
    problem.headers["Connection"] = "close"
    return problem


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    timeout: float
    # Whether its bodies take their bytes from the process's budget (batch calls: a single-item
    # body is small, and must not queue behind batches).
    budgeted: bool = False


def require_media_type(request: web.Request, accepted: Collection[str] = (JSON,)) -> None:
    """415 unless the body is declared as one of `accepted`, in UTF-8 (JSON's only encoding, and
    the only one a feed is read in)."""
    if request.content_type not in accepted:
        raise Problem(
            415,
            "Unsupported Media Type",
            "send the body as Content-Type: " + " or ".join(accepted),
            kind="unsupported-media-type",
        )
    charsets = _charsets(request.headers.get("Content-Type", ""))
    if len(charsets) > 1:
        raise Problem(
            415,
            "Unsupported Media Type",
            "the Content-Type names a charset more than once: name it once (utf-8) or not at all",
            kind="unsupported-media-type",
        )
    if charsets and charsets[0].lower() not in JSON_CHARSETS:
        # As ASCII: a header's non-ASCII bytes come as surrogates that no JSON answer can
        # carry (a 500: hostile trial).
        said = charsets[0][:40].encode("ascii", "backslashreplace").decode() or "an empty charset"
        raise Problem(
            415,
            "Unsupported Media Type",
            f"{TEXT_FORMATS.get(request.content_type, 'the body')} must be UTF-8, not {said}",
            kind="unsupported-media-type",
        )


def _charsets(content_type: str) -> list[str]:
    """The `charset` parameters of a Content-Type, every one as sent (`request.charset` gives
    the first alone, and none when it is empty: `charset=utf-8; charset=latin1` and `charset=`
    passed). aiohttp's parser, which keeps them all, is cached."""
    return parse_mimetype(content_type).parameters.getall("charset", [])


async def read_body(request: web.Request, limits: BodyLimits) -> bytes:
    """The whole body; 413 as soon as it is known to exceed the limit (declared or streamed),
    408 if it has not arrived within the deadline, 400 if it cannot be decoded (its
    Content-Encoding does not match it)."""
    try:
        return await _read_body(request, limits)
    except web.RequestPayloadError as exc:
        # Nothing more can be read: aiohttp must not try to drain it after the answer (it would
        # log the same error again as unhandled).
        request.content.feed_eof()
        detail = (
            str(exc)
            if isinstance(exc, BodyBroken)
            else "the request is not valid HTTP/1.1: the body cannot be decoded as its "
            "Content-Encoding says"
        )
        raise _closing(Problem(400, "Bad Request", detail, kind="malformed-request")) from None


async def _read_body(request: web.Request, limits: BodyLimits) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limits.max_bytes:
        raise _closing(_too_large(limits.max_bytes))
    await send_continue(request)
    content = request.content
    if content.is_eof():
        # Already here in full (a small body usually came with the headers): no deadline to
        # keep, nothing to wait for.
        body = content.read_nowait()
        if len(body) > limits.max_bytes:
            raise _closing(_too_large(limits.max_bytes))
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limits.max_bytes:
                    raise _closing(_too_large(limits.max_bytes))
                chunks.append(chunk)
    except TimeoutError:
        raise _closing(
            Problem(
                408,
                "Request Timeout",
                f"the body did not arrive within {limits.timeout:g} s",
                kind="request-timeout",
            )
        ) from None
    return b"".join(chunks)


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Content Too Large",
        f"the body is larger than {limit} bytes",
        kind="content-too-large",
    )


def parse_json(body: bytes, items: str | None = None) -> Any:
    """The body's JSON; 400 saying why and where (line and column; for a batch, given the key
    of its array of items, which item holds the fault)."""
    if not body:
        raise Problem(
            400, "Bad Request", "the body is empty: send a JSON document", kind="malformed-json"
        )
    try:
        return jsonsafe.loads(body, items=items)
    except jsonsafe.MalformedJSON as exc:
        raise Problem(400, "Bad Request", exc.detail, kind="malformed-json") from None


async def json_body(
    request: web.Request, limits: BodyLimits, accepted: Collection[str] = (JSON,)
) -> tuple[bytes, Any]:
    """The raw body and its JSON, after the media type, size, deadline and JSON checks."""
    require_media_type(request, accepted)
    body = await read_body(request, limits)
    return body, parse_json(body)


def query_flag(request: web.Request, name: str) -> bool:
    """A flag, false when absent: `true`/`1` or `false`/`0` in any case; sent empty it is a 400,
    as every other parameter is, rather than read as false."""
    value = (optional_query(request.query, name) or "false").lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise bad_query(name, "must be true, false, 1 or 0")


def query_limit(request: web.Request, default: int, maximum: int) -> int:
    """The `limit` query parameter: an integer from 1 to `maximum` (400 otherwise)."""
    text = request.query.get("limit")
    if text is None:
        return default
    if not (len(text) <= 6 and text.isascii() and text.isdigit() and 1 <= int(text) <= maximum):
        raise bad_query("limit", f"must be an integer from 1 to {maximum}")
    return int(text)


def query_since(request: web.Request, name: str = "updated_since") -> datetime | None:
    """A timestamp query parameter (RFC 3339 with an offset), None when absent (400 otherwise,
    an empty one saying so as every other empty parameter does)."""
    text = optional_query(request.query, name)
    if text is None:
        return None
    return query_timestamp(name, text)
