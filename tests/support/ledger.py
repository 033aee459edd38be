"""The ledger of a soak run and the checker that holds the system to it.

The ledger keeps every request a soak client sent: what it carried, each attempt's HTTP status
and wall-clock interval, and the `event_id` of a 202. The checker (pure, no I/O) compares it with
what the system shows afterwards — receipts, stored assets, investor prices — under the rules of
docs/api.md, "Versions and ordering" and "Investors".

Acceptance order is what breaks ties at equal `updated_at`/`as_of`, and the API does not show it
for assets. It is inferred from the intervals instead: one ingest-api process hands out strictly
increasing acceptance instants, each inside its request's interval, so a request first sent after
another one was answered was surely accepted later. Requests whose intervals overlap may have been
accepted in either order, and the checker accepts either outcome for them.

A request that never got its 202 (503s, or a lost connection, to the end) may or may not have
reached the broker: it is "unresolved", allowed to be the stored state but never required to be.

Merge patches (`PATCH /v1/assets/{id}`) each set one field (`name`) to a value of their own, so
the stored document tells which patch, if any, it carries. A patch applies onto the stored base
(the newest upsert or deletion) in version order; whether it ended `applied`, `stale_ignored` or
`rejected` depends on what was stored when it arrived, which the checker bounds with the store's
`decided_at` (see check_patch_order).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

Kind = Literal["asset", "price"]
EVENT_TYPE: dict[Kind, str] = {"asset": "asset.upserted", "price": "price.updated"}
# Receipt statuses a decided push or tick may end in here (no deletions, no sanity holds).
DECIDED = frozenset({"applied", "stale_ignored", "duplicate"})
# A merge patch may also end `rejected` (it found no document to patch).
PATCH_DECIDED = DECIDED | {"rejected"}
# The field the ledger's merge patches set, each to a value of its own.
PATCHED_FIELD = "name"
# `decided_at` is when the deciding transaction began: an event decided this much earlier than
# another was surely committed before the other one was decided (a transaction of the reconciler
# lasts far less, its statements being bounded by the lock and statement timeouts).
DECISION_SLACK = 30.0
# Slack when matching a server instant against client-side intervals (same clock, one host).
CLOCK_SLACK = 0.005


@dataclass
class Attempt:
    started: float  # wall clock (time.time()) just before sending
    ended: float  # wall clock once the answer was read (or the connection failed)
    status: int  # HTTP status; 0 when no answer arrived
    retry_after: str | None = None  # the answer's Retry-After header, if any


@dataclass
class Request:
    """One logical push (retried on 503 with the same body): an asset upsert or a price tick."""

    kind: Kind
    asset_id: str
    version: datetime  # the document's updated_at, or the tick's as_of
    content: str  # what tells apart two bodies of one version (same content: a duplicate)
    body: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    event_id: str | None = None
    problem: str | None = None  # the body of an answer that was neither 202 nor 503
    # Events the store holds that one of its non-202 attempts may have sent (check_store_events).
    landed: int = 0
    # An asset request is an upsert (PUT, POST, a batch item), a deletion (DELETE, versioned at
    # its `deleted_at`) or a merge patch (PATCH, versioned at its `updated_at`; its content is
    # the value it sets PATCHED_FIELD to).
    op: Literal["upsert", "delete", "patch"] = "upsert"

    @property
    def event_type(self) -> str:
        if self.op == "delete":
            return "asset.deleted"
        if self.op == "patch":
            return "asset.patched"
        return EVENT_TYPE[self.kind]

    @property
    def started(self) -> float:
        return self.attempts[0].started

    @property
    def answered(self) -> float:
        return self.attempts[-1].ended

    @property
    def accepted(self) -> bool:
        return self.event_id is not None

    @property
    def unresolved(self) -> bool:
        """No 202, and the last answer (a 5xx, or none) leaves open whether the event reached
        the broker."""
        if self.accepted or not self.attempts:
            return False
        last = self.attempts[-1].status
        return last == 0 or last >= 500

    @property
    def possible(self) -> bool:
        return self.accepted or self.unresolved


def clock(moment: float) -> str:
    """A wall-clock instant as UTC time of day, to compare with the services' logs."""
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S.%f")


def surely_after(later: Request, earlier: Request) -> bool:
    """`later` was first sent after `earlier` was answered, so it was accepted after it."""
    return later.started > earlier.answered


@dataclass
class StoredReceipt:
    """A receipt as the store holds it (to trace events the ledger never got a 202 for)."""

    event_id: str
    asset_id: str
    type: str
    status: str
    accepted_at: datetime
    decided_at: datetime | None = None


@dataclass
class Window:
    """A broker cut, from the cut until ingest-api was ready again (plus a grace)."""

    start: float
    end: float


@dataclass
class Findings:
    figures: dict[str, Any] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)
    # The (kind, asset_id) whose final state is wrong, for the caller to gather evidence on.
    subjects: list[tuple[Kind, str]] = field(default_factory=list)

    def add(self, category: str, message: str, subject: tuple[Kind, str] | None = None) -> None:
        self.violations.setdefault(category, []).append(message)
        if subject is not None and subject not in self.subjects:
            self.subjects.append(subject)

    def count(self, category: str) -> int:
        return len(self.violations.get(category, []))

    def total(self) -> int:
        return sum(len(v) for v in self.violations.values())

    def report(self, first: int = 5) -> str:
        lines = []
        for category, messages in sorted(self.violations.items()):
            lines.append(f"{category}: {len(messages)}")
            lines.extend(f"  - {m}" for m in messages[:first])
        return "\n".join(lines)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _by_asset(requests: Iterable[Request], kind: Kind) -> dict[str, list[Request]]:
    grouped: dict[str, list[Request]] = {}
    for request in requests:
        if request.kind == kind and request.possible:
            grouped.setdefault(request.asset_id, []).append(request)
    return grouped


def _could_be_last(candidate: Request, group: list[Request]) -> bool:
    """No accepted request of the group was surely accepted after `candidate`."""
    return not any(q.accepted and q is not candidate and surely_after(q, candidate) for q in group)


def calls(requests: Iterable[Request]) -> list[Request]:
    """One request per HTTP call: the items of a batch share one list of attempts, and only the
    first of them stands for the call."""
    seen: set[int] = set()
    first = []
    for request in requests:
        if id(request.attempts) not in seen:
            seen.add(id(request.attempts))
            first.append(request)
    return first


def check_answers(requests: list[Request], cuts: list[Window], findings: Findings) -> None:
    """Every answer is a 202, or a 503 (or no answer: ingest-api itself was killed) inside a
    fault's window; anything else is a finding."""
    statuses: Counter[int] = Counter()
    for request in calls(requests):
        for attempt in request.attempts:
            statuses[attempt.status] += 1
            where = f"{request.kind} {request.asset_id} at {clock(attempt.started)}"
            if attempt.status in (503, 0) and any(
                attempt.ended >= w.start and attempt.started <= w.end for w in cuts
            ):
                continue
            if attempt.status == 503:
                findings.add("503 outside a broker cut", where)
            elif attempt.status != 202:
                findings.add(
                    "other errors",
                    f"{where}: HTTP {attempt.status} {(request.problem or '')[:300]}",
                )
    findings.figures["answers"] = dict(sorted(statuses.items()))
    findings.figures["503s"] = statuses[503]
    findings.figures["other_errors"] = findings.count("other errors")


def _unjustified(request: Request, status: str, others: list[Request]) -> str | None:
    """Why the ledger cannot explain `status`, or None when it can. `others`: the other requests
    of the same asset and kind that might have reached the store."""
    if request.op == "patch":
        return _unjustified_patch(request, status, others)
    older = [q for q in others if q.version < request.version]
    others = [q for q in others if q.version >= request.version]
    if status == "stale_ignored":
        # Something newer was accepted (for a price: at the same as_of, an older as_of is still
        # `applied` to history), or at the same version something possibly accepted later.
        if any(
            (q.version > request.version and request.kind == "asset")
            or (q.version == request.version and not surely_after(request, q))
            for q in others
        ):
            return None
        return "stale_ignored, yet nothing that could supersede it was sent"
    if status == "duplicate" and request.op == "delete":
        # A deletion of what is deleted already: another deletion, no newer, could have been
        # accepted before it, or its own attempt answered 503 that reached the broker after all.
        if request.landed or any(
            q.op == "delete" and q.version <= request.version and not surely_after(q, request)
            for q in (*older, *others)
        ):
            return None
        return "a deletion's duplicate, yet no deletion was sent before it"
    if status == "duplicate":
        # An identical copy of the same version could have been accepted before it: another
        # request, or its own attempt that was answered 503 but reached the broker after all.
        if request.landed or any(
            q.version == request.version
            and q.content == request.content
            and not surely_after(q, request)
            for q in others
        ):
            return None
        # Under a newer patch, an upsert with the content of the base it replaces leaves the
        # patched document as it was: the patch's `updated_at` and value, the same content.
        if any(q.op == "patch" and q.version > request.version for q in others) and any(
            q.op == "upsert" and q.content == request.content for q in older
        ):
            return None
        return "duplicate of nothing sent before it"
    return None


def _unjustified_patch(request: Request, status: str, others: list[Request]) -> str | None:
    """A patch ends `stale_ignored` only below an upsert or deletion at least as new; `duplicate`
    only below a newer patch (which sets the same field again) or when one of its own attempts
    landed too (each patch sets a value of its own). `applied` and `rejected` depend on what was
    stored when it arrived: check_patch_order."""
    newer = [q for q in others if q.version >= request.version]
    if status == "stale_ignored":
        if any(q.op != "patch" for q in newer):
            return None
        return "patch stale_ignored, yet no upsert or deletion at least as new was sent"
    if status == "duplicate" and not request.landed:
        # A newer patch, or one at the same updated_at that may have been accepted later.
        if any(
            q.op == "patch" and (q.version > request.version or not surely_after(request, q))
            for q in newer
        ):
            return None
        return "patch duplicate, yet it sets a value of its own and nothing newer overrides it"
    return None


def check_receipts(
    requests: list[Request], receipts: Mapping[str, Mapping[str, Any] | None], findings: Findings
) -> None:
    """Each 202'd event left `accepted` for a status its own ledger can justify."""
    possible = {k: _by_asset(requests, k) for k in ("asset", "price")}
    by_status: dict[str, Counter[str]] = {"asset": Counter(), "price": Counter()}
    for request in requests:
        if not request.accepted:
            continue
        receipt = receipts.get(str(request.event_id))
        status = receipt.get("status") if receipt else None
        by_status[request.kind][str(status)] += 1
        what = (
            f"{request.kind} {request.event_id} ({request.asset_id}, "
            f"{len(request.attempts)} attempt(s), {request.landed} landed)"
        )
        if receipt is None or status == "accepted":
            findings.add("lost", f"{what}: receipt {receipt!r}")
            continue
        if status not in (PATCH_DECIDED if request.op == "patch" else DECIDED):
            findings.add("receipt sanity", f"{what}: unexpected status {receipt!r}")
            continue
        if receipt.get("asset_id") != request.asset_id or receipt.get("type") != request.event_type:
            findings.add("receipt sanity", f"{what}: receipt of another event {receipt!r}")
        others = [q for q in possible[request.kind].get(request.asset_id, []) if q is not request]
        unjustified = _unjustified(request, str(status), others)
        if unjustified:
            findings.add("receipt sanity", f"{what}: {unjustified}")
    findings.figures["asset_receipts"] = dict(sorted(by_status["asset"].items()))
    findings.figures["price_receipts"] = dict(sorted(by_status["price"].items()))
    findings.figures["lost"] = findings.count("lost")


def check_patch_order(
    requests: list[Request], stored: list[StoredReceipt], findings: Findings
) -> None:
    """Each patch's receipt against the upserts and deletions of its asset surely decided before
    it (decided more than DECISION_SLACK earlier; the stored base only ever grows):

    - one newer than the patch decided before it: the patch must end `stale_ignored`;
    - an older upsert applied before it, and no deletion between the two: the patch had a
      document to patch, so `rejected` is wrong (an accepted patch, lost)."""
    decided = {r.event_id: r for r in stored}

    def decided_before(q: Request, moment: datetime) -> bool:
        receipt = decided.get(str(q.event_id)) if q.accepted else None
        return bool(
            receipt
            and receipt.decided_at
            and receipt.status in DECIDED
            and receipt.decided_at.timestamp() + DECISION_SLACK < moment.timestamp()
        )

    counts: Counter[str] = Counter()
    for asset_id, group in sorted(_by_asset(requests, "asset").items()):
        bases = [q for q in group if q.op != "patch"]
        for patch in group:
            receipt = decided.get(str(patch.event_id)) if patch.accepted else None
            if patch.op != "patch" or receipt is None or receipt.decided_at is None:
                continue
            counts[receipt.status] += 1
            what = f"patch {patch.event_id} ({asset_id} at {patch.version})"
            moment = receipt.decided_at
            if receipt.status in ("applied", "duplicate"):
                newer = [
                    q for q in bases if q.version > patch.version and decided_before(q, moment)
                ]
                if newer:
                    findings.add(
                        "stale overwrites",
                        f"{what}: {receipt.status}, yet {newer[0].op} {newer[0].event_id} at "
                        f"{newer[0].version} was decided before it",
                        subject=("asset", asset_id),
                    )
            elif receipt.status == "rejected":
                under = [
                    u
                    for u in bases
                    if u.op == "upsert"
                    and u.version < patch.version
                    and decided_before(u, moment)
                    and decided[str(u.event_id)].status in ("applied", "duplicate")
                    and not any(
                        d.op == "delete" and u.version < d.version < patch.version for d in bases
                    )
                ]
                if under:
                    findings.add(
                        "lost",
                        f"{what}: rejected, yet upsert {under[0].event_id} at "
                        f"{under[0].version} was applied before it and nothing deleted it",
                        subject=("asset", asset_id),
                    )
    findings.figures["patch_receipts"] = dict(sorted(counts.items()))
    findings.figures["lost"] = findings.count("lost")


def check_assets(
    requests: list[Request],
    stored: Mapping[str, tuple[int, Mapping[str, Any]]],
    content_of: Callable[[Mapping[str, Any]], str],
    expected_hash: Callable[[dict[str, Any]], str],
    receipts: Mapping[str, Mapping[str, Any] | None],
    findings: Findings,
) -> None:
    """Each asset holds the document of the last-accepted upsert of its greatest `updated_at`,
    and on top of it the value of the last patch newer than it, if any; no patch whose receipt
    says `applied` is newer than the stored version (it is reflected, or was superseded)."""
    grouped = _by_asset(requests, "asset")
    tied = ambiguous = 0
    for asset_id in sorted(set(grouped) | set(stored)):
        everything = grouped.get(asset_id, [])
        patches = [p for p in everything if p.op == "patch"]
        pushes = [p for p in everything if p.op != "patch"]
        accepted = [p for p in pushes if p.accepted]
        status, document = stored.get(asset_id, (404, {}))
        if not accepted:
            if status != 404 and not pushes:
                findings.add(
                    "wrong final state",
                    f"{asset_id}: stored, never pushed",
                    subject=("asset", asset_id),
                )
            continue
        newest = max(p.version for p in accepted)
        if status != 200:
            # Gone: right only if a deletion at least as new as everything accepted may be last.
            deletions = [p for p in pushes if p.op == "delete"]
            if any(d.version >= newest for d in deletions):
                continue
            findings.add(
                "wrongful deletions" if deletions else "lost",
                f"{asset_id}: {len(accepted)} requests accepted (newest {newest}), GET {status}",
                subject=("asset", asset_id),
            )
            continue
        meta = document.get("_meta", {})
        version = _parse_time(str(meta.get("updated_at")))
        if version < newest:
            findings.add(
                "stale overwrites",
                f"{asset_id}: stored updated_at {meta.get('updated_at')} < accepted {newest}",
                subject=("asset", asset_id),
            )
            continue
        missed = [
            p
            for p in patches
            if p.accepted
            and p.version > version
            and (receipts.get(str(p.event_id)) or {}).get("status") in ("applied", "duplicate")
        ]
        if missed:
            findings.add(
                "lost",
                f"{asset_id}: patch {missed[0].event_id} at {missed[0].version} applied, yet the "
                f"stored version is {version}",
                subject=("asset", asset_id),
            )
            continue
        on_top = [p for p in patches if p.version == version]
        if on_top:
            # A patch rejected or stale when it arrived never takes effect, even if accepted
            # later than the one stored.
            on_top = [
                p
                for p in on_top
                if (receipts.get(str(p.event_id)) or {}).get("status")
                not in ("rejected", "stale_ignored")
            ]
            _check_patched(
                asset_id, document, version, on_top, pushes, content_of, expected_hash, findings
            )
            continue
        group = [p for p in pushes if p.version == version and p.op == "upsert"]
        if not group:
            findings.add(
                "wrong final state",
                f"{asset_id}: stored version {version} never sent",
                subject=("asset", asset_id),
            )
            continue
        if version > newest and all(p.accepted for p in group):
            findings.add(
                "wrong final state",
                f"{asset_id}: {version} > every accepted version",
                subject=("asset", asset_id),
            )
            continue
        content = content_of(document)
        winners = [p for p in group if p.content == content and _could_be_last(p, group)]
        # How decisive the check was: several contents at the newest version, and how many of
        # them the ledger leaves possible as the last accepted.
        if len({p.content for p in group}) > 1:
            tied += 1
            possible = {p.content for p in group if _could_be_last(p, group)}
            ambiguous += len(possible) > 1
        if not winners:
            sent = [
                (clock(p.started), clock(p.answered), p.content, p.accepted)
                for p in sorted(group, key=lambda p: p.started)
            ]
            findings.add(
                "stale overwrites",
                f"{asset_id}: stored content {content!r} at {version} is not from a push that "
                f"could be the last accepted; pushes (sent, answered, content, 202) {sent[-6:]}",
                subject=("asset", asset_id),
            )
            continue
        if meta.get("content_hash") != expected_hash(winners[0].body):
            findings.add(
                "wrong final state",
                f"{asset_id}: content_hash {meta.get('content_hash')} differs from the document's",
                subject=("asset", asset_id),
            )
        decided = [receipts.get(str(p.event_id)) for p in winners if p.accepted]
        if len(decided) == len(winners) and not any(
            r and r.get("status") in ("applied", "duplicate") for r in decided
        ):
            statuses = [r and r.get("status") for r in decided]
            findings.add(
                "receipt sanity",
                f"{asset_id}: the stored push's receipts {statuses}",
                subject=("asset", asset_id),
            )
    findings.figures["lost"] = findings.count("lost")
    findings.figures["stale_overwrites"] = findings.count("stale overwrites")
    findings.figures["wrongful_deletions"] = findings.count("wrongful deletions")
    findings.figures["assets_tied_at_newest"] = tied
    findings.figures["assets_tie_ambiguous"] = ambiguous


def _check_patched(
    asset_id: str,
    document: Mapping[str, Any],
    version: datetime,
    on_top: list[Request],
    pushes: list[Request],
    content_of: Callable[[Mapping[str, Any]], str],
    expected_hash: Callable[[dict[str, Any]], str],
    findings: Findings,
) -> None:
    """The stored version is a patch's: the document is an upsert older than it that may be the
    base (no accepted upsert or deletion between them) with the value of a patch at that version
    that may be the last accepted of them."""
    value = str(document.get(PATCHED_FIELD))
    tops = [p for p in on_top if p.content == value and _could_be_last(p, on_top)]
    if not tops:
        findings.add(
            "stale overwrites",
            f"{asset_id}: stored {PATCHED_FIELD} {value!r} at {version} is not from a patch that "
            f"could be the last accepted at that version",
            subject=("asset", asset_id),
        )
        return
    content = content_of(document)
    bases = [
        u
        for u in pushes
        if u.op == "upsert"
        and u.version < version
        and u.content == content
        and not any(q.accepted and u.version < q.version < version for q in pushes if q is not u)
        and _could_be_last(u, [q for q in pushes if q.version == u.version])
    ]
    if not bases:
        findings.add(
            "stale overwrites",
            f"{asset_id}: patched at {version}, yet the stored content {content!r} is not from "
            f"an upsert that could be its base",
            subject=("asset", asset_id),
        )
        return
    hashes = {
        expected_hash({**u.body, PATCHED_FIELD: value, "updated_at": tops[0].body["updated_at"]})
        for u in bases
    }
    if document.get("_meta", {}).get("content_hash") not in hashes:
        findings.add(
            "wrong final state",
            f"{asset_id}: content_hash differs from the patched document's",
            subject=("asset", asset_id),
        )


def check_prices(
    requests: list[Request],
    read: Mapping[str, tuple[int, Mapping[str, Any]]],
    findings: Findings,
) -> None:
    """Each investor read shows the greatest `as_of`, at it the last-accepted tick's amount, and
    `received_at` = that tick's acceptance instant."""
    grouped = _by_asset(requests, "price")
    tied = 0
    for asset_id, ticks in sorted(grouped.items()):
        accepted = [t for t in ticks if t.accepted]
        status, price = read.get(asset_id, (404, {}))
        if not accepted:
            continue
        if status != 200:
            findings.add(
                "lost",
                f"price {asset_id}: {len(accepted)} ticks accepted, GET {status}",
                subject=("price", asset_id),
            )
            continue
        as_of = _parse_time(str(price.get("as_of")))
        newest = max(t.version for t in accepted)
        if as_of < newest:
            findings.add(
                "price regressions",
                f"{asset_id}: as_of {price.get('as_of')} < accepted {newest}",
                subject=("price", asset_id),
            )
            continue
        group = [t for t in ticks if t.version == as_of]
        tied += len({t.content for t in group}) > 1
        if not group or (as_of > newest and all(t.accepted for t in group)):
            findings.add(
                "price regressions",
                f"{asset_id}: as_of {as_of} never accepted",
                subject=("price", asset_id),
            )
            continue
        amount = Decimal(str(price.get("amount")))
        received = _parse_time(str(price.get("received_at"))).timestamp()
        # The stored tick: its amount, and its acceptance instant inside its request's interval.
        sources = [
            t
            for t in group
            if Decimal(str(t.body["amount"])) == amount
            and t.started - CLOCK_SLACK <= received <= t.answered + CLOCK_SLACK
        ]
        if not sources:
            findings.add(
                "price regressions",
                f"{asset_id}: {amount} received_at {price.get('received_at')} matches no tick",
                subject=("price", asset_id),
            )
            continue
        # A tick with another amount, first sent after that instant, was accepted later: it wins.
        overtaken = [
            t
            for t in group
            if t.accepted
            and t.started > received + CLOCK_SLACK
            and Decimal(str(t.body["amount"])) != amount
        ]
        if overtaken:
            later = overtaken[0]
            findings.add(
                "price regressions",
                f"{asset_id}: at as_of {as_of} reads {amount} (accepted "
                f"{price.get('received_at')}), but tick {later.event_id} with "
                f"{later.body['amount']} was sent later, at {clock(later.started)}",
                subject=("price", asset_id),
            )
    findings.figures["price_regressions"] = findings.count("price regressions")
    findings.figures["prices_tied_at_newest"] = tied


def check_store_events(
    requests: list[Request], stored: list[StoredReceipt], findings: Findings
) -> None:
    """Every event the store holds for the provider is one request's: a 202'd event accepted
    within its request, or a 503'd attempt that reached the broker after all (noted on the
    request, so run this before check_receipts). Anything else is an effect nobody asked for
    (a double publish, say)."""
    by_event = {str(r.event_id): r for r in requests if r.accepted}
    unanswered: dict[tuple[str, str], list[tuple[Attempt, Request]]] = {}
    for request in requests:
        for attempt in request.attempts:
            if attempt.status != 202:
                key = (request.event_type, request.asset_id)
                unanswered.setdefault(key, []).append((attempt, request))
    landed = 0
    for receipt in stored:
        instant = receipt.accepted_at.timestamp()
        owner = by_event.get(receipt.event_id)
        if owner is not None:
            final = owner.attempts[-1]
            if not final.started - CLOCK_SLACK <= instant <= final.ended + CLOCK_SLACK:
                findings.add(
                    "receipt sanity",
                    f"{receipt.event_id}: accepted_at {receipt.accepted_at} outside its request",
                )
            continue
        senders = [
            request
            for attempt, request in unanswered.get((receipt.type, receipt.asset_id), [])
            if attempt.started - CLOCK_SLACK <= instant <= attempt.ended + CLOCK_SLACK
        ]
        if senders:
            # Which of several overlapping senders it was is unknowable: each of them may have
            # landed (that is all a `duplicate` receipt needs to be explained).
            landed += 1
            for sender in senders:
                sender.landed += 1
        else:
            findings.add(
                "duplicate effects",
                f"{receipt.event_id} {receipt.type} {receipt.asset_id} accepted "
                f"{receipt.accepted_at} ({receipt.status}): no request explains it",
            )
    findings.figures["landed_503s"] = landed
    findings.figures["duplicate_effects"] = findings.count("duplicate effects")


def check_change_feed(
    entries: list[Mapping[str, Any]],
    applied: Mapping[str, str],
    stored: Mapping[str, tuple[int, Mapping[str, Any]]],
    provider_id: str,
    findings: Findings,
) -> None:
    """What a change-feed reader collected while the load ran (every page, resumed from each
    `next_cursor`) against the store: one entry per applied asset event of the provider
    (`applied`: event id -> asset id), none twice, none missing, and each asset's last entry
    describing its stored state (so the entries of one asset came in their applied order)."""
    mine = [e for e in entries if e.get("provider_id") == provider_id]
    seen: Counter[str] = Counter(str(e["event_id"]) for e in mine)
    for event_id, count in seen.items():
        if count > 1:
            findings.add("change-feed repeats", f"{event_id} read {count} times")
    for event_id, asset_id in applied.items():
        if event_id not in seen:
            findings.add("change-feed gaps", f"{event_id} ({asset_id}) applied, never in the feed")
    for event_id in seen:
        if event_id not in applied:
            findings.add("change-feed gaps", f"{event_id} in the feed, yet not an applied event")
    last: dict[str, Mapping[str, Any]] = {}
    for entry in mine:
        last[str(entry["asset_id"])] = entry
    for asset_id, entry in sorted(last.items()):
        status, document = stored.get(asset_id, (404, {}))
        deleted = bool(entry.get("deleted"))
        if deleted != (status == 404):
            findings.add(
                "change-feed gaps",
                f"{asset_id}: last entry deleted={deleted}, GET {status}",
            )
        elif not deleted:
            meta = document.get("_meta", {})
            if _parse_time(str(entry.get("updated_at"))) != _parse_time(
                str(meta.get("updated_at"))
            ) or entry.get("content_hash") != meta.get("content_hash"):
                findings.add(
                    "change-feed gaps",
                    f"{asset_id}: last entry {entry.get('updated_at')} "
                    f"{str(entry.get('content_hash'))[:12]} is not the stored state "
                    f"{meta.get('updated_at')} {str(meta.get('content_hash'))[:12]}",
                )
    findings.figures["change_feed_entries"] = len(mine)
    findings.figures["change_feed_gaps"] = findings.count("change-feed gaps")
    findings.figures["change_feed_repeats"] = findings.count("change-feed repeats")


def check_tenant_walls(
    intruder_reads: Mapping[str, tuple[int, Mapping[str, Any]]],
    intruder_content: str,
    content_of: Callable[[Mapping[str, Any]], str],
    foreign_receipt_reads: Mapping[str, int],
    findings: Findings,
) -> None:
    """Another provider, pushing the same asset ids meanwhile, reads them back: each answer is
    its own document or a 404, never the victim's; the victim's receipts are 404s to it."""
    for asset_id, (status, document) in sorted(intruder_reads.items()):
        if status == 200 and content_of(document) != intruder_content:
            findings.add("cross-tenant", f"{asset_id}: another provider's document was read")
        elif status not in (200, 404):
            findings.add("cross-tenant", f"{asset_id}: GET answered {status}")
    for event_id, status in sorted(foreign_receipt_reads.items()):
        if status != 404:
            findings.add("cross-tenant", f"receipt {event_id} of another provider: {status}")
    findings.figures["cross_tenant"] = findings.count("cross-tenant")
