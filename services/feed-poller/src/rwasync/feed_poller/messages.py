"""A run's decisions as events (pure): upserts and deletions for the assets exchange, prices for
the pricing exchange, packed many to a message. Every event of the run counts as accepted at the
snapshot time (docs/api.md, "Versions and ordering").

A price an item carries is published when the item was validated in this run (new, or changed
since the copy accepted last time): with the item's `price.as_of`, else the snapshot time, the
moment the provider asserted it. The pricing service's guard decides whether it is the latest.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from rwasync.feed_poller.comparing import RowPayload
from rwasync.feeds.snapshot import Action, Decision
from rwasync.schema.event_ids import new_event_id
from rwasync.schema.events import SCHEMA_VERSION, Arrival, EventType


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every event of one run shares."""

    feed_id: str
    run_id: str
    # The version time of deletions and the acceptance instant of every event.
    snapshot_time: datetime
    # Whose feed, fetched when, traced by the run id.
    arrival: Arrival


class MissingDocument(Exception):
    """An upsert was decided for an item whose document was not staged (it can only happen if the
    stored asset changed in a way the version order forbids); the item is skipped and logged."""


# An event as it goes on the wire: the fields `EventMessage` decodes, as JSON-ready values (an
# upsert's document as its canonical JSON bytes, exactly what was hashed, spliced in by orjson).
# Built as plain dicts: every value comes from a validated item, the stored state or the run
# itself, and building pydantic models only to dump them again was most of the publish pass; the
# consumers validate every message they decode all the same.
WireEvent = dict[str, Any]


def _event(
    kind: EventType, run: RunContext, asset_id: str, updated_at: datetime, payload: dict[str, Any]
) -> WireEvent:
    arrival = run.arrival
    return {
        "event_id": new_event_id(),
        "type": kind,
        "provider_id": arrival.provider_id,
        "asset_id": asset_id,
        "source": arrival.source,
        "updated_at": updated_at,
        "accepted_at": run.snapshot_time,
        "received_at": arrival.received_at,
        "trace_id": arrival.trace_id,
        "schema_version": SCHEMA_VERSION,
        "payload": payload,
    }


def upsert_event(decision: Decision, run: RunContext) -> WireEvent:
    assert decision.row is not None and decision.version_updated_at is not None
    payload = decision.row.payload
    assert isinstance(payload, RowPayload)
    raw = payload.document or payload.stored_document
    if raw is None or decision.row.content_hash is None:
        raise MissingDocument(decision.asset_id)
    event = _event(
        EventType.ASSET_UPSERTED,
        run,
        decision.asset_id,
        decision.version_updated_at,
        {
            "document": orjson.Fragment(bytes(raw)),
            "content_hash": bytes(decision.row.content_hash).hex(),
        },
    )
    if decision.event_id is not None:
        # The id the comparison drew, so the plan compared exactly this version.
        event["event_id"] = decision.event_id
    return event


def deletion_event(decision: Decision, run: RunContext) -> WireEvent:
    return _event(
        EventType.ASSET_DELETED,
        run,
        decision.asset_id,
        run.snapshot_time,
        {"reason": f"missing from feed {run.feed_id} run {run.run_id}"},
    )


def price_event(decision: Decision, run: RunContext) -> WireEvent | None:
    """The price the winning item carries, if it was validated in this run."""
    if decision.row is None or decision.action in (Action.DELETE, Action.KEEP, Action.NONE):
        return None
    payload = decision.row.payload
    if not isinstance(payload, RowPayload) or payload.price is None:
        return None
    amount, currency, as_of = payload.price
    as_of = as_of or run.snapshot_time
    return _event(
        EventType.PRICE_UPDATED,
        run,
        decision.asset_id,
        as_of,
        {"amount": amount, "currency": currency, "as_of": as_of},
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_events(events: list[WireEvent]) -> tuple[str, bytes]:
    """One message of `events` as (message id, body), the shape `EventMessage` decodes; a single
    event's message id is its event id."""
    message_id = events[0]["event_id"] if len(events) == 1 else uuid.uuid4()
    body = orjson.dumps({"message_id": message_id, "events": events}, default=_json_default)
    return str(message_id), body
