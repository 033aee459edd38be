"""Trace context at ingest-api: a caller's W3C `traceparent` (else a new trace) follows the
request into the published message's headers, the event and its receipt."""

from __future__ import annotations

import pytest

from rwasync.platform import tracing
from rwasync.schema import topology
from rwasync.schema.messages import decode_message
from tests.integration.ingest.conftest import Provider, Queues
from tests.integration.ingest.helpers import Client, accepted_event_id, house, put_json

pytestmark = pytest.mark.integration

TRACE = "0af7651916cd43dd8448eb211c80319c"


async def test_a_callers_traceparent_reaches_the_message_and_the_receipt(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    headers = {**provider.basic, "traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}
    response = await put_json(ingest, "/v1/assets/traced-1", house("traced-1"), headers)
    assert response.headers["X-Trace-Id"] == TRACE
    event_id = await accepted_event_id(response)

    message = await queues.next(queues.assets)
    assert message.headers[topology.HEADER_TRACE_ID] == TRACE
    parent = str(message.headers[topology.HEADER_TRACEPARENT])
    assert tracing.trace_id_from_traceparent(parent) == TRACE
    assert parent != headers["traceparent"]  # a hop of its own: same trace, new span id
    (event,) = decode_message(message.body).events
    assert event.trace_id == TRACE

    receipt = await ingest.get(f"/v1/events/{event_id}", headers=provider.basic)
    assert (await receipt.json())["trace_id"] == TRACE


async def test_without_a_traceparent_a_trace_is_made_up_and_still_followed(
    ingest: Client, queues: Queues, provider: Provider
) -> None:
    headers = {**provider.basic, "traceparent": "not-a-traceparent"}
    response = await put_json(ingest, "/v1/assets/traced-2", house("traced-2"), headers)
    trace_id = response.headers["X-Trace-Id"]
    assert len(trace_id) == 32 and trace_id != TRACE
    event_id = await accepted_event_id(response)
    message = await queues.next(queues.assets)
    assert message.headers[topology.HEADER_TRACE_ID] == trace_id
    receipt = await ingest.get(f"/v1/events/{event_id}", headers=provider.basic)
    assert (await receipt.json())["trace_id"] == trace_id
