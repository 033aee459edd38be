"""A run's decisions as events (pure): upserts and deletions for the assets exchange, prices for
the pricing exchange, built straight as their wire form (`rwasync.schema.messages`: no models;
`encode_wire_events` packs many to a message). Every event of the run counts as accepted at the
snapshot time (docs/api.md, "Versions and ordering").

A price an item carries is published when the item was validated in this run (new, or changed
since the copy accepted last time): with the item's `price.as_of`, else the snapshot time, the
moment the provider asserted it. The pricing service's guard decides whether it is the latest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from rwasync.feed_poller.comparing import RowPayload
from rwasync.feeds.snapshot import Action, Decision
from rwasync.schema.event_ids import event_id_drawer
from rwasync.schema.events import Arrival, EventType
from rwasync.schema.messages import WireEvent, asset_upserted_wire, event_wire, price_updated_wire


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every event of one run shares."""

    feed_id: str
    run_id: str
    # The version time of deletions and the acceptance instant of every event.
    snapshot_time: datetime
    # Whose feed, fetched when, traced by the run id.
    arrival: Arrival
    # The ids of the events the comparison did not draw (deletions, prices): the run's drawer.
    new_id: Callable[[], str] = field(default_factory=event_id_drawer)


class MissingDocument(Exception):
    """An upsert was decided for an item whose document was not staged (it can only happen if the
    stored asset changed in a way the version order forbids); the item is skipped and logged."""


def upsert_event(decision: Decision, run: RunContext) -> tuple[WireEvent, int]:
    """The upsert event of a decision, and the size of the document it carries."""
    assert decision.row is not None and decision.version_updated_at is not None
    payload = decision.row.payload
    assert isinstance(payload, RowPayload)
    raw = payload.document or payload.stored_document
    if raw is None or decision.row.content_hash is None:
        raise MissingDocument(decision.asset_id)
    event = asset_upserted_wire(
        run.arrival,
        # The id the comparison drew, if it drew one, so the plan compared exactly this version.
        event_id=decision.event_id or run.new_id(),
        asset_id=decision.asset_id,
        updated_at=decision.version_updated_at,
        accepted_at=run.snapshot_time,
        # The canonical JSON exactly as it was hashed, spliced in by orjson.
        document=orjson.Fragment(bytes(raw)),
        content_hash=bytes(decision.row.content_hash).hex(),
    )
    return event, len(raw)


def deletion_event(decision: Decision, run: RunContext) -> WireEvent:
    return event_wire(
        run.arrival,
        EventType.ASSET_DELETED,
        event_id=run.new_id(),
        asset_id=decision.asset_id,
        updated_at=run.snapshot_time,
        accepted_at=run.snapshot_time,
        payload={"reason": f"missing from feed {run.feed_id} run {run.run_id}"},
    )


def withholds_price(decision: Decision) -> bool:
    """Whether the run lists a price for the asset that `price_event` does not send, other than
    one the feed's last copy sent already: a stale item's, or one of an id an invalid item lists
    too. The next run must not count it as sent (`queries.MARK_PRICES_WITHHELD`)."""
    if decision.action == Action.NONE:
        return True
    payload = decision.row.payload if decision.row is not None else None
    return (
        isinstance(payload, RowPayload)
        and payload.price is not None
        and not payload.price_sent_before
    )


def price_event(decision: Decision, run: RunContext) -> WireEvent | None:
    """The price the winning item carries, unless the feed's last copy stated the same one, or
    the item is older than the stored asset (a stale copy's price would pass for the newest, as
    of the snapshot)."""
    if decision.row is None or decision.action in (Action.DELETE, Action.KEEP, Action.NONE):
        return None
    if decision.stale:
        return None
    payload = decision.row.payload
    if not isinstance(payload, RowPayload) or payload.price is None:
        return None
    if payload.price_sent_before:
        # The same price as in the feed's last copy: no news, whatever else of the item changed
        # (as of this snapshot, it would replace a price pushed since).
        return None
    amount, currency, as_of = payload.price
    return price_updated_wire(
        run.arrival,
        event_id=run.new_id(),
        asset_id=decision.asset_id,
        amount=amount,
        currency=currency,
        as_of=as_of or run.snapshot_time,
        accepted_at=run.snapshot_time,
    )
