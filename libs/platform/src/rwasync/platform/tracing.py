"""Trace context: the trace id of the work in hand (an HTTP request, a feed run, a consumed
message), taken from a W3C `traceparent` when the caller sends one, else made up; it is bound to
every log line and travels in the headers of the messages published for that work."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final

import structlog

from rwasync.schema import topology

# version-traceid-parentid-flags; an all-zero trace or parent id is invalid (W3C Trace Context).
_TRACEPARENT: Final = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_TRACE_ID: Final = re.compile(r"^[0-9a-f]{32}$")
# What a caller may send as a plain request id (`X-Request-Id`): kept only if it is this tame.
_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

current_trace_id: ContextVar[str] = ContextVar("trace_id", default="")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def trace_id_from_traceparent(value: str | None) -> str | None:
    """The trace id of a valid `traceparent` header, else None (the caller's is then ignored)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None or match.group(1) == "ff":
        return None
    trace_id, parent_id = match.group(2), match.group(3)
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def request_trace_id(headers: Mapping[str, str]) -> str:
    """A request's trace: its `traceparent`, else its `X-Request-Id`, else a new one."""
    from_parent = trace_id_from_traceparent(headers.get("traceparent"))
    if from_parent is not None:
        return from_parent
    request_id = headers.get("X-Request-Id", "")
    return request_id if _REQUEST_ID.fullmatch(request_id) else new_trace_id()


def traceparent(trace_id: str) -> str | None:
    """A `traceparent` for a hop of this trace (a new span id each time); None if the id is not
    a W3C trace id (a caller's own `X-Request-Id`)."""
    if not _TRACE_ID.fullmatch(trace_id):
        return None
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def bind(trace_id: str) -> None:
    current_trace_id.set(trace_id)
    structlog.contextvars.bind_contextvars(trace_id=trace_id)


def message_headers(trace_id: str) -> dict[str, Any]:
    """The headers that carry a trace into a published message."""
    if not trace_id:
        return {}
    headers: dict[str, Any] = {topology.HEADER_TRACE_ID: trace_id}
    parent = traceparent(trace_id)
    if parent is not None:
        headers[topology.HEADER_TRACEPARENT] = parent
    return headers


def message_trace_id(headers: Mapping[str, Any] | None) -> str:
    """The trace a consumed message belongs to ('' if its publisher sent none)."""
    headers = headers or {}
    value = headers.get(topology.HEADER_TRACE_ID)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
        return value
    parent = headers.get(topology.HEADER_TRACEPARENT)
    if isinstance(parent, bytes):
        parent = parent.decode(errors="replace")
    return trace_id_from_traceparent(parent if isinstance(parent, str) else None) or ""
