"""The soak run's ledger checker must be able to fail: outcomes that break each rule are found."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.ledger import (
    Attempt,
    Findings,
    Kind,
    Request,
    StoredReceipt,
    Window,
    calls,
    check_answers,
    check_assets,
    check_change_feed,
    check_patch_order,
    check_prices,
    check_receipts,
    check_store_events,
    check_tenant_walls,
)

pytestmark = pytest.mark.unit

SLOT = timedelta(minutes=5)


def _request(
    kind: Kind,
    content: str,
    version: datetime,
    started: float,
    ended: float,
    status: int = 202,
    event_id: str | None = None,
) -> Request:
    body: dict[str, Any] = (
        {"amount": content} if kind == "price" else {"status": content, "description": None}
    )
    request = Request(kind, "a-1", version, content, body)
    request.attempts.append(Attempt(started, ended, status))
    request.event_id = event_id if status == 202 else None
    return request


def test_the_ledger_checker_sees_each_kind_of_violation() -> None:
    """The checker must be able to fail: feed it outcomes that break each rule."""
    t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    older, newer = t - SLOT, t
    first = _request("asset", "x", newer, 1.0, 2.0, event_id="e1")
    second = _request("asset", "y", newer, 3.0, 4.0, event_id="e2")  # surely accepted after
    stale = _request("asset", "z", older, 5.0, 6.0, event_id="e3")
    refused = _request("asset", "z", older, 7.0, 8.0, status=500)
    outside = _request("asset", "z", older, 9.0, 10.0, status=503)
    ledger = [first, second, stale, refused, outside]
    receipts = {
        "e1": {"status": "applied", "asset_id": "a-1", "type": "asset.upserted"},
        "e2": {"status": "accepted", "asset_id": "a-1", "type": "asset.upserted"},
        "e3": {"status": "duplicate", "asset_id": "a-1", "type": "asset.upserted"},
    }
    stored = {"a-1": (200, {"status": "x", "_meta": {"updated_at": "2026-01-01T12:00:00Z"}})}

    def content(document: Mapping[str, Any]) -> str:
        return str(document.get("status"))

    findings = Findings()
    check_answers(ledger, [Window(100.0, 110.0)], findings)
    check_receipts(ledger, receipts, findings)
    check_assets(ledger, stored, content, lambda body: "h", receipts, findings)
    assert findings.count("503 outside a broker cut") == 1
    assert findings.count("other errors") == 1
    assert findings.count("lost") == 1  # e2 never decided
    assert findings.count("receipt sanity") == 1  # e3: a duplicate of nothing
    assert findings.count("stale overwrites") == 1  # x stored, y was surely accepted later

    # Prices: the earlier tick is read although a later one with another amount was accepted.
    early = _request("price", "100", newer, 1.0, 2.0, event_id="p1")
    late = _request("price", "101", newer, 3.0, 4.0, event_id="p2")
    regressed = {"a-1": (200, {"as_of": "2026-01-01T11:55:00Z", "amount": "100"})}
    wrong_tick = {
        "a-1": (
            200,
            {
                "as_of": "2026-01-01T12:00:00Z",
                "amount": "100",
                "received_at": datetime.fromtimestamp(1.5, UTC).isoformat(),
            },
        )
    }
    right_tick = {
        "a-1": (
            200,
            {
                "as_of": "2026-01-01T12:00:00Z",
                "amount": "101",
                "received_at": datetime.fromtimestamp(3.5, UTC).isoformat(),
            },
        )
    }
    for read, expected in ((regressed, 1), (wrong_tick, 1), (right_tick, 0)):
        findings = Findings()
        check_prices([early, late], read, findings)
        assert findings.count("price regressions") == expected, (read, findings.report())

    # Store events: one explained by a 503'd attempt, one by nothing.
    landed = _request("price", "100", newer, 20.0, 21.0, status=503)
    ghosts = [
        StoredReceipt("p9", "a-1", "price.updated", "applied", datetime.fromtimestamp(20.5, UTC)),
        StoredReceipt("p8", "a-1", "price.updated", "applied", datetime.fromtimestamp(50.0, UTC)),
    ]
    # A retried tick may be the duplicate of its own 503'd attempt when that reached the store.
    retried = _request("price", "100", newer, 20.0, 21.0, status=503)
    retried.attempts.append(Attempt(22.0, 23.0, 202))
    retried.event_id = "p3"
    alone = _request("price", "101", older, 24.0, 25.0, event_id="p4")
    findings = Findings()
    check_store_events(
        [retried, alone],
        [
            StoredReceipt(
                "p0", "a-1", "price.updated", "applied", datetime.fromtimestamp(20.5, UTC)
            ),
            StoredReceipt(
                "p3", "a-1", "price.updated", "duplicate", datetime.fromtimestamp(22.5, UTC)
            ),
            StoredReceipt(
                "p4", "a-1", "price.updated", "duplicate", datetime.fromtimestamp(24.5, UTC)
            ),
        ],
        findings,
    )
    check_receipts(
        [retried, alone],
        {
            "p3": {"status": "duplicate", "asset_id": "a-1", "type": "price.updated"},
            "p4": {"status": "duplicate", "asset_id": "a-1", "type": "price.updated"},
        },
        findings,
    )
    assert findings.violations == {
        "receipt sanity": [
            "price p4 (a-1, 1 attempt(s), 0 landed): duplicate of nothing sent before it"
        ]
    }

    findings = Findings()
    check_store_events([landed], ghosts, findings)
    assert findings.figures["landed_503s"] == 1
    assert findings.count("duplicate effects") == 1


def test_a_batch_is_one_call_and_a_landed_retry_justifies_each_overlapping_sender() -> None:
    """Items of a batch share their attempts (counted once); a stored event whose instant falls
    in two requests' 503'd attempts may be either's, so either may see its retry `duplicate`."""
    t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    shared: list[Attempt] = [Attempt(1.0, 2.0, 503, "1"), Attempt(3.0, 4.0, 202)]
    batch = [Request("price", f"a-{i}", t, "100", {"amount": "100"}, shared) for i in range(3)]
    for i, item in enumerate(batch):
        item.event_id = f"b{i}"
    findings = Findings()
    check_answers(batch, [Window(0.0, 5.0)], findings)
    assert findings.figures["answers"] == {202: 1, 503: 1}
    assert calls(batch) == batch[:1]

    first = _request("price", "100", t, 1.0, 2.0, status=503)
    first.attempts.append(Attempt(2.5, 2.6, 202))
    first.event_id = "p1"
    second = _request("price", "100", t, 1.5, 2.2, status=503)
    second.attempts.append(Attempt(2.7, 2.8, 202))
    second.event_id = "p2"
    stored = [
        StoredReceipt("early", "a-1", "price.updated", "applied", datetime.fromtimestamp(1.8, UTC)),
        StoredReceipt("p1", "a-1", "price.updated", "duplicate", datetime.fromtimestamp(2.55, UTC)),
        StoredReceipt("p2", "a-1", "price.updated", "duplicate", datetime.fromtimestamp(2.75, UTC)),
    ]
    findings = Findings()
    check_store_events([first, second], stored, findings)
    assert first.landed == 1 and second.landed == 1
    receipts = {
        e: {"status": "duplicate", "asset_id": "a-1", "type": "price.updated"} for e in ("p1", "p2")
    }
    check_receipts([first, second], receipts, findings)
    assert findings.total() == 0, findings.report()


def _entry(event_id: str, asset_id: str, updated_at: str, digest: str | None) -> dict[str, Any]:
    return {
        "cursor": f"c-{event_id}",
        "event_id": event_id,
        "provider_id": "prv_a",
        "asset_id": asset_id,
        "updated_at": updated_at,
        "deleted": digest is None,
        "content_hash": digest,
    }


def test_the_change_feed_check_sees_gaps_repeats_and_a_wrong_last_entry() -> None:
    stored: dict[str, tuple[int, Mapping[str, Any]]] = {
        "a": (200, {"_meta": {"updated_at": "2026-01-01T12:05:00Z", "content_hash": "h2"}}),
        "b": (404, {}),
        "c": (200, {"_meta": {"updated_at": "2026-01-01T12:00:00Z", "content_hash": "h9"}}),
    }
    clean = [
        _entry("e1", "a", "2026-01-01T12:00:00Z", "h1"),
        _entry("e2", "a", "2026-01-01T12:05:00Z", "h2"),
        _entry("e3", "b", "2026-01-01T12:00:00Z", None),
        _entry("e4", "c", "2026-01-01T12:00:00Z", "h9"),
        {**_entry("x1", "a", "2026-01-01T13:00:00Z", "zz"), "provider_id": "prv_other"},
    ]
    applied = {"e1": "a", "e2": "a", "e3": "b", "e4": "c"}
    findings = Findings()
    check_change_feed(clean, applied, stored, "prv_a", findings)
    assert findings.total() == 0, findings.report()

    broken = [clean[1], clean[0], clean[2], clean[2]]  # a's entries swapped, b's twice, c's lost
    findings = Findings()
    check_change_feed(broken, applied, stored, "prv_a", findings)
    assert findings.figures["change_feed_repeats"] == 1
    assert findings.figures["change_feed_gaps"] == 2  # e4 missing; a's last entry is not stored


def test_the_tenant_wall_check_sees_a_foreign_read() -> None:
    findings = Findings()
    own = {"status": "active", "description": "mine"}
    check_tenant_walls(
        {"a": (200, own), "b": (404, {}), "c": (200, {"status": "active", "description": "x"})},
        "active|mine",
        lambda d: f"{d.get('status')}|{d.get('description')}",
        {"e1": 404, "e2": 200},
        findings,
    )
    assert findings.figures["cross_tenant"] == 2


def test_a_deletion_may_end_an_asset_only_when_it_is_the_newest_accepted() -> None:
    t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    upsert = _request("asset", "x", t, 1.0, 2.0, event_id="u1")
    older_delete = Request("asset", "a-1", t - SLOT / 2, "deleted", {}, op="delete")
    older_delete.attempts.append(Attempt(3.0, 4.0, 202))
    older_delete.event_id = "d1"
    newer_delete = Request("asset", "a-1", t + SLOT / 2, "deleted", {}, op="delete")
    newer_delete.attempts.append(Attempt(3.0, 4.0, 202))
    newer_delete.event_id = "d2"
    gone: dict[str, tuple[int, Mapping[str, Any]]] = {"a-1": (404, {})}

    def check(ledger: list[Request]) -> Findings:
        findings = Findings()
        check_assets(ledger, gone, lambda d: "", lambda b: "", {}, findings)
        return findings

    assert check([upsert, newer_delete]).total() == 0
    assert check([upsert, older_delete]).figures["wrongful_deletions"] == 1
    assert check([upsert]).count("lost") == 1
    assert newer_delete.event_type == "asset.deleted" and upsert.event_type == "asset.upserted"


def test_a_deletion_is_a_duplicate_only_after_a_deletion_no_newer() -> None:
    """Deleting what is deleted already is `duplicate` (the tombstone's version moves on)."""
    t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def deletion(event_id: str, version: datetime, started: float) -> Request:
        request = Request("asset", "a-1", version, "deleted", {}, op="delete")
        request.attempts.append(Attempt(started, started + 1.0, 202))
        request.event_id = event_id
        return request

    def findings(*ledger: Request) -> Findings:
        found = Findings()
        receipts = {"d2": {"status": "duplicate", "asset_id": "a-1", "type": "asset.deleted"}}
        receipts |= {"d1": {"status": "applied", "asset_id": "a-1", "type": "asset.deleted"}}
        check_receipts(list(ledger), receipts, found)
        return found

    assert findings(deletion("d1", t, 1.0), deletion("d2", t + SLOT, 3.0)).total() == 0
    assert findings(deletion("d1", t, 1.0), deletion("d2", t, 3.0)).total() == 0
    # only a newer deletion before it, or none at all: nothing made it a duplicate
    assert findings(deletion("d1", t + SLOT, 1.0), deletion("d2", t, 3.0)).total() == 1
    assert findings(deletion("d2", t, 3.0)).total() == 1


def _patch(value: str, version: datetime, started: float, event_id: str | None) -> Request:
    patch = Request(
        "asset",
        "a-1",
        version,
        value,
        {"updated_at": version.isoformat(), "name": value},
        op="patch",
    )
    patch.attempts.append(Attempt(started, started + 1.0, 202 if event_id else 503))
    patch.event_id = event_id
    return patch


def _receipt(event_id: str, type_: str, status: str, decided: float) -> StoredReceipt:
    return StoredReceipt(
        event_id,
        "a-1",
        type_,
        status,
        datetime.fromtimestamp(decided - 1.0, UTC),
        datetime.fromtimestamp(decided, UTC),
    )


def _hash(body: Mapping[str, Any]) -> str:
    return f"{body.get('status')}|{body.get('name')}|{body.get('updated_at')}"


def _stored(status: str, name: str, version: datetime) -> dict[str, tuple[int, Mapping[str, Any]]]:
    document = {"status": status, "name": name, "updated_at": version.isoformat()}
    meta = {"updated_at": version.isoformat(), "content_hash": _hash(document)}
    return {"a-1": (200, {**document, "_meta": meta})}


def test_the_checker_holds_merge_patches_to_their_rules() -> None:
    """A patch applied is in the stored document unless something newer superseded it; one older
    than the stored base ends stale_ignored; one of an asset with no document ends rejected; and
    the checker finds each outcome that breaks these, and none in a run that keeps them."""
    t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    base = _request("asset", "x", t - SLOT, 1.0, 2.0, event_id="u1")
    base.body = {"status": "x", "name": "base name", "updated_at": (t - SLOT).isoformat()}
    patch = _patch("patched", t - SLOT + SLOT / 4, 3.0, "p1")
    newer = _request("asset", "y", t, 100.0, 101.0, event_id="u2")
    newer.body = {"status": "y", "name": "base name", "updated_at": t.isoformat()}
    receipt = {"status": "applied", "asset_id": "a-1", "type": "asset.patched"}
    upserted = {"status": "applied", "asset_id": "a-1", "type": "asset.upserted"}

    def content(document: Mapping[str, Any]) -> str:
        return str(document.get("status"))

    def check(
        ledger: list[Request],
        stored: dict[str, tuple[int, Mapping[str, Any]]],
        receipts: dict[str, Mapping[str, Any] | None],
        decisions: list[StoredReceipt] | None = None,
    ) -> Findings:
        findings = Findings()
        check_receipts(ledger, receipts, findings)
        check_patch_order(ledger, decisions or [], findings)
        check_assets(ledger, stored, content, _hash, receipts, findings)
        return findings

    patched = _stored("x", "patched", patch.version)
    right = check([base, patch], patched, {"u1": upserted, "p1": receipt})
    assert right.total() == 0, right.report()
    assert patch.event_type == "asset.patched"

    # Applied, yet the stored document is the base alone: the patch was lost.
    unpatched = _stored("x", "base name", base.version)
    assert check([base, patch], unpatched, {"u1": upserted, "p1": receipt}).count("lost") == 1
    # ...unless a newer upsert superseded it.
    superseded = _stored("y", "base name", newer.version)
    fine = check([base, patch, newer], superseded, {"u1": upserted, "p1": receipt, "u2": upserted})
    assert fine.total() == 0, fine.report()

    # The stored value is of a patch that was not the last accepted at its version.
    later = _patch("patched later", patch.version, 10.0, "p2")
    found = check([base, patch, later], patched, {"u1": upserted, "p1": receipt, "p2": receipt})
    assert found.count("stale overwrites") == 1, found.report()
    # The patch sits on a base that a newer accepted upsert below the patch replaced.
    middle = _request("asset", "z", t - SLOT + SLOT / 8, 20.0, 21.0, event_id="u3")
    found = check([base, middle, patch], patched, {"u1": upserted, "u3": upserted, "p1": receipt})
    assert found.count("stale overwrites") == 1, found.report()
    # The hash is not the patched document's.
    wrong_hash = _stored("x", "patched", patch.version)
    wrong_hash["a-1"][1]["_meta"]["content_hash"] = "other"
    found = check([base, patch], wrong_hash, {"u1": upserted, "p1": receipt})
    assert found.count("wrong final state") == 1, found.report()

    # stale_ignored needs an upsert or deletion at least as new; duplicate, a landed attempt.
    stale = {"status": "stale_ignored", "asset_id": "a-1", "type": "asset.patched"}
    assert (
        check([base, patch], unpatched, {"u1": upserted, "p1": stale}).count("receipt sanity") == 1
    )
    assert (
        check(
            [base, patch, newer], superseded, {"u1": upserted, "p1": stale, "u2": upserted}
        ).total()
        == 0
    )
    duplicate = {"status": "duplicate", "asset_id": "a-1", "type": "asset.patched"}
    assert (
        check([base, patch], patched, {"u1": upserted, "p1": duplicate}).count("receipt sanity")
        == 1
    )

    # rejected is a patch's end only: an upsert's `rejected` is a finding.
    rejected = {"status": "rejected", "asset_id": "a-1", "type": "asset.patched"}
    no_base = check([patch], {}, {"p1": rejected})
    assert no_base.total() == 0, no_base.report()
    odd = check([base], unpatched, {"u1": {**upserted, "status": "rejected"}})
    assert odd.count("receipt sanity") == 2  # its status, and the stored push's receipt

    # Rejected although its base was applied well before it: lost. Not when a deletion between
    # them may have left a tombstone, nor when the base's decision may have overlapped it.
    decided = [
        _receipt("u1", "asset.upserted", "applied", 10.0),
        _receipt("p1", "asset.patched", "rejected", 100.0),
    ]
    found = check([base, patch], unpatched, {"u1": upserted, "p1": rejected}, decided)
    assert found.count("lost") == 1, found.report()
    between = Request("asset", "a-1", base.version + SLOT / 8, "deleted", {}, op="delete")
    between.attempts.append(Attempt(5.0, 6.0, 503))
    found = check([base, between, patch], unpatched, {"u1": upserted, "p1": rejected}, decided)
    assert found.count("lost") == 0, found.report()
    close = [decided[0], _receipt("p1", "asset.patched", "rejected", 20.0)]
    assert check([base, patch], unpatched, {"u1": upserted, "p1": rejected}, close).total() == 0

    # Applied although an upsert newer than it had been decided well before: a stale overwrite.
    decided = [
        _receipt("u1", "asset.upserted", "applied", 10.0),
        _receipt("u2", "asset.upserted", "applied", 20.0),
        _receipt("p1", "asset.patched", "applied", 200.0),
    ]
    found = check(
        [base, patch, newer], superseded, {"u1": upserted, "p1": receipt, "u2": upserted}, decided
    )
    assert found.count("stale overwrites") == 1, found.report()


def test_duplicates_under_a_newer_patch_are_explained_and_only_those() -> None:
    """A newer patch sets the same field again, so an older patch arriving late leaves the
    document as it was (`duplicate`); so does an upsert replacing a base of its content under a
    patch (the patch's updated_at and value are on top of both). Without the newer patch, each
    is a duplicate of nothing."""
    t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    base = _request("asset", "x", t - 2 * SLOT, 1.0, 2.0, event_id="u1")
    replacing = _request("asset", "x", t - SLOT, 3.0, 4.0, event_id="u2")
    early = _patch("early", t - SLOT + SLOT / 4, 5.0, "p1")
    late = _patch("late", t + SLOT / 4, 7.0, "p2")
    duplicate = {"status": "duplicate", "asset_id": "a-1", "type": "asset.patched"}
    upsert_duplicate = {"status": "duplicate", "asset_id": "a-1", "type": "asset.upserted"}
    applied = {"status": "applied", "asset_id": "a-1", "type": "asset.patched"}

    def sanity(ledger: list[Request], receipts: dict[str, Mapping[str, Any] | None]) -> int:
        findings = Findings()
        check_receipts(ledger, receipts, findings)
        return findings.count("receipt sanity")

    assert sanity([base, early, late], {"p1": duplicate, "p2": applied}) == 0
    assert sanity([base, early], {"p1": duplicate}) == 1
    assert sanity([base, replacing, late], {"u2": upsert_duplicate, "p2": applied}) == 0
    assert sanity([base, replacing], {"u2": upsert_duplicate}) == 1
    other = _request("asset", "y", t - 2 * SLOT, 1.0, 2.0, event_id="u3")
    assert sanity([other, replacing, late], {"u2": upsert_duplicate, "p2": applied}) == 1


def test_ties_between_patches_at_one_updated_at() -> None:
    """Two patches at one updated_at: the one accepted later is on top, so the earlier one,
    arriving after it, is rightly `duplicate`; and a later one `rejected` when it arrived (no
    document yet) never takes effect, so the earlier one may be what is stored."""
    t = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    base = _request("asset", "x", t - SLOT, 1.0, 2.0, event_id="u1")
    base.body = {"status": "x", "name": "base name", "updated_at": (t - SLOT).isoformat()}
    first = _patch("first", t + SLOT / 4, 3.0, "p1")
    second = _patch("second", t + SLOT / 4, 10.0, "p2")  # surely accepted after `first`
    upserted = {"status": "applied", "asset_id": "a-1", "type": "asset.upserted"}

    def receipt(status: str) -> Mapping[str, Any]:
        return {"status": status, "asset_id": "a-1", "type": "asset.patched"}

    def check(stored_name: str, statuses: tuple[str, str]) -> Findings:
        findings = Findings()
        receipts = {"u1": upserted, "p1": receipt(statuses[0]), "p2": receipt(statuses[1])}
        check_receipts([base, first, second], receipts, findings)
        stored = _stored("x", stored_name, first.version)
        check_assets(
            [base, first, second], stored, lambda d: str(d["status"]), _hash, receipts, findings
        )
        return findings

    assert check("second", ("duplicate", "applied")).total() == 0
    assert check("first", ("applied", "rejected")).total() == 0
    assert check("first", ("applied", "applied")).count("stale overwrites") == 1
    # The later one cannot be the duplicate of the earlier one: it is on top.
    assert check("second", ("applied", "duplicate")).count("receipt sanity") == 1
