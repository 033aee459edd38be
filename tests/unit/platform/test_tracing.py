"""Trace context: which caller-sent ids are taken, and what a message carries."""

from __future__ import annotations

import pytest

from rwasync.platform import tracing
from rwasync.schema import topology

pytestmark = pytest.mark.unit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, TRACE),
        # traceparent wins over X-Request-Id
        ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00", "X-Request-Id": "req-1"}, TRACE),
        ({"X-Request-Id": "req-1"}, "req-1"),
    ],
)
def test_a_callers_trace_is_taken(headers: dict[str, str], expected: str) -> None:
    assert tracing.request_trace_id(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},  # all-zero trace id
        {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},  # all-zero parent id
        {"traceparent": f"ff-{TRACE}-00f067aa0ba902b7-01"},  # forbidden version
        {"traceparent": f"00-{TRACE.upper()}-00f067aa0ba902b7-01"},  # not lowercase hex
        {"traceparent": "garbage"},
        {"X-Request-Id": "has spaces and\nnewlines"},
        {"X-Request-Id": "x" * 129},
    ],
)
def test_an_invalid_trace_is_replaced_by_a_new_one(headers: dict[str, str]) -> None:
    trace_id = tracing.request_trace_id(headers)
    assert len(trace_id) == 32 and int(trace_id, 16) > 0
    assert tracing.request_trace_id(headers) != trace_id  # made up anew each time


def test_message_headers_round_trip() -> None:
    headers = tracing.message_headers(TRACE)
    assert headers[topology.HEADER_TRACE_ID] == TRACE
    assert tracing.trace_id_from_traceparent(headers[topology.HEADER_TRACEPARENT]) == TRACE
    assert tracing.message_trace_id(headers) == TRACE
    # A caller's own request id travels too, without a traceparent (it is not a W3C trace id).
    assert tracing.message_headers("req-1") == {topology.HEADER_TRACE_ID: "req-1"}
    assert tracing.message_trace_id({topology.HEADER_TRACE_ID: b"req-1"}) == "req-1"
    # Only a traceparent (another publisher's message): its trace id.
    parent = f"00-{TRACE}-00f067aa0ba902b7-01"
    assert tracing.message_trace_id({topology.HEADER_TRACEPARENT: parent}) == TRACE
    assert tracing.message_headers("") == {}
    assert tracing.message_trace_id(None) == ""
