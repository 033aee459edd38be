"""The asset queue's raw decoder (`raw_events`) against the models (`decode_message`), on valid
and mutated messages: whatever the raw decoder accepts, the models accept with equal values (the
document equal once parsed); whatever it does not, it leaves to the models, so a rejected
message is rejected with the models' own reason."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from rwasync.schema.events import (
    AnyEvent,
    Arrival,
    AssetPatched,
    AssetUpserted,
    EventMessage,
    EventSource,
    MalformedMessage,
    asset_deleted,
    asset_patched,
    asset_upserted,
    price_updated,
)
from rwasync.schema.messages import decode_message, encode_message, message_for
from rwasync.schema.raw_events import (
    RawAssetDeleted,
    RawAssetPatched,
    RawAssetUpserted,
    decode_asset_message,
    event_model,
)

pytestmark = pytest.mark.unit

HASH = "0123456789abcdef" * 4
DOCUMENT = TypeAdapter(dict[str, Any])
T0 = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)

# --- the property -------------------------------------------------------------------------------


def outcome(body: bytes) -> tuple[list[AnyEvent] | None, str | None]:
    try:
        return list(decode_message(body).events), None
    except MalformedMessage as exc:
        return None, str(exc)


def decoded_alike(
    body: bytes, decode: Callable[[bytes], Sequence[Any]], raw_types: tuple[type, ...]
) -> list[tuple[Any, AnyEvent]] | None:
    """`decode` ends as the models do on `body`: the same refusal and reason, or the same events
    with the same envelopes. Returns each event `decode` built raw beside the models' event, or
    None when it refused or left the message to the models."""
    expected, reason = outcome(body)
    try:
        got = decode(body)
    except MalformedMessage as exc:
        assert (None, str(exc)) == (expected, reason)
        return None
    assert reason is None and expected is not None
    assert len(got) == len(expected)
    raw = [isinstance(e, raw_types) for e in got]
    assert all(raw) or not any(raw), "a message is decoded raw whole, or by the models whole"
    if not any(raw):
        assert repr(got) == repr(expected)  # the models' path itself (repr: NaN equals NaN)
        return None
    pairs = list(zip(got, expected, strict=True))
    for event, model in pairs:
        assert event_model(event) == model
        assert event.type == model.type
        for name in ("event_id", "provider_id", "asset_id", "source", "trace_id"):
            assert getattr(event, name) == getattr(model, name)
        for name in ("updated_at", "accepted_at", "received_at"):
            mine, theirs = getattr(event, name), getattr(model, name)
            assert (mine, mine.utcoffset()) == (theirs, theirs.utcoffset())
    return pairs


def assert_decoded_alike(body: bytes) -> bool:
    """The raw decoder ends as the models do; returns whether it decoded the message raw."""
    pairs = decoded_alike(
        body, decode_asset_message, (RawAssetUpserted, RawAssetPatched, RawAssetDeleted)
    )
    for event, model in pairs or []:
        if isinstance(event, RawAssetUpserted):
            assert isinstance(model, AssetUpserted)
            document = model.payload.document
            assert DOCUMENT.validate_json(event.payload.document_json) == document
            assert event.payload.document_id == document.get("id")
            assert event.payload.status == document.get("status")
            assert event.payload.content_hash == model.payload.content_hash
            assert event.payload.digest == bytes.fromhex(model.payload.content_hash)
        if isinstance(event, RawAssetPatched):
            assert isinstance(model, AssetPatched)
            assert DOCUMENT.validate_json(event.payload.patch_json) == model.payload.patch
    return pairs is not None


# --- valid messages ----------------------------------------------------------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m))),
)
ids = st.text(min_size=1, max_size=8)


@st.composite
def asset_events(draw: st.DrawFn) -> AnyEvent:
    moment = draw(moments)
    arrival = Arrival(
        draw(ids), draw(st.sampled_from(EventSource)), moment, draw(st.text(max_size=128))
    )
    asset_id = draw(ids)
    document = draw(st.dictionaries(st.text(), json_values, max_size=5))
    kind = draw(st.sampled_from(["upserted", "patched", "deleted", "price"]))
    if kind == "upserted":
        document_id = draw(st.just(asset_id) | json_values)
        status = draw(st.sampled_from(["active", None]) | json_values)
        head = {"id": document_id} | ({"status": status} if status is not None else {})
        return asset_upserted(
            arrival,
            asset_id=asset_id,
            updated_at=draw(moments),
            accepted_at=moment,
            document={**document, **head},
            content_hash=draw(st.just(HASH) | st.from_regex(r"\A[0-9a-f]{64}\Z")),
        )
    if kind == "patched":
        return asset_patched(
            arrival, asset_id=asset_id, updated_at=moment, accepted_at=moment, patch=document
        )
    if kind == "deleted":
        reason = draw(st.none() | st.text(max_size=20))
        return asset_deleted(
            arrival, asset_id=asset_id, updated_at=moment, accepted_at=moment, reason=reason
        )
    return price_updated(
        arrival,
        asset_id=asset_id,
        amount=Decimal("52.10"),
        currency="EUR",
        as_of=moment,
        accepted_at=moment,
    )


@st.composite
def messages(draw: st.DrawFn) -> EventMessage:
    """Messages of events as the constructors make them, with ids hypothesis draws (so that an
    example replays alike)."""
    events = draw(st.lists(asset_events(), min_size=1, max_size=4))
    return EventMessage(
        message_id=draw(st.uuids()),
        events=[e.model_copy(update={"event_id": draw(st.uuids())}) for e in events],
    )


@settings(max_examples=200, deadline=None)
@given(messages())
def test_what_our_publishers_write_decodes_alike(message: EventMessage) -> None:
    body = encode_message(message)
    decoded_raw = assert_decoded_alike(body)
    typical = all(
        not isinstance(e, AssetUpserted)
        or (
            type(e.payload.document.get("id")) is str
            and type(e.payload.document.get("status")) in (str, type(None))
        )
        for e in message.events
    )
    # Price events belong on another queue: such a message (and a document whose id or status is
    # not text) is left to the models; every other message our publishers write is decoded raw.
    if typical and all(e.type != "price.updated" for e in message.events):
        assert decoded_raw


# --- the same messages, written otherwise and mutated ------------------------------------------


def timestamp_forms(moment: datetime) -> st.SearchStrategy[Any]:
    """The ways a timestamp may be written, valid or not for either decoder."""
    naive = moment.replace(tzinfo=None)
    offset = moment.strftime("%z")
    base = naive.strftime("%Y-%m-%dT%H:%M:%S")
    return st.sampled_from(
        [
            moment.isoformat(),
            naive.isoformat(),
            naive.isoformat() + "Z",
            base + "Z",
            base + "z",
            base.replace("T", "t") + "Z",
            base.replace("T", " ") + "Z",
            base + ".000000Z",
            base + ".5Z",
            base + ".1234564Z",
            base + ".1234567Z",
            base + ".9999999Z",
            base + ",123456Z",
            base + "+00:00",
            base + "-00:00",
            base + "+0100",
            base + "+01",
            base + "+00:60",
            base + "+23:59",
            base + "+24:00",
            base + offset,
            naive.strftime("%Y-%m-%d"),
            naive.strftime("%Y%m%dT%H%M%SZ"),
            naive.strftime("%G-W%V-%uT%H:%M:%SZ"),
            base[:16] + "Z",
            base[:17] + "60Z",
            "２０２５" + base[4:] + "Z",
            int(moment.timestamp()),
            moment.timestamp(),
            str(int(moment.timestamp())),
            None,
        ]
    )


def uuid_forms(value: uuid.UUID) -> st.SearchStrategy[Any]:
    text = str(value)
    return st.sampled_from(
        [
            text,
            text.upper(),
            value.hex,
            "{" + text + "}",
            "urn:uuid:" + text,
            text[:-1],
            text + "0",
            text.replace("-", "", 1),
            value.int,
            "",
        ]
    )


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def parent_of(tree: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        tree = tree[step]
    return tree


wrong_values = json_values | st.sampled_from(
    [
        "",
        "x" * 65,
        "x" * 129,
        "é" * 64,
        "😀" * 65,
        "x" * 2001,
        "\x00",
        HASH.upper(),
        HASH + "\n",
        HASH[:-1],
        "asset.upserted",
        "asset.patched",
        "asset.deleted",
        "price.updated",
        "push",
        "PUSH",
        # amounts and currencies (price events): forms the two decoders might read otherwise
        "1e3",
        " 1.5",
        "+1",
        "1_000",
        "NaN",
        "١٢",
        "1.5\n",
        "-0",
        "USD\n",
        "usd",
        "ÜSD",
        1.0,
        True,
        2,
        [],
        {},
    ]
)


@st.composite
def mutated_bodies(draw: st.DrawFn, of: st.SearchStrategy[EventMessage] | None = None) -> bytes:
    """A message (drawn from `of`, by default `messages()`) with damage of every kind."""
    message = draw(of if of is not None else messages())
    tree = json.loads(encode_message(message))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths(tree)))
        if not path:
            continue
        parent, key = parent_of(tree, path), path[-1]
        field = key if isinstance(key, str) else None
        operation = draw(st.sampled_from(["replace", "delete", "extra", "form"]))
        if operation == "delete":
            del parent[key]
        elif operation == "extra" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12) | st.just("extra"))] = draw(json_values)
        elif operation == "form" and field in ("updated_at", "accepted_at", "received_at", "as_of"):
            parent[key] = draw(timestamp_forms(draw(moments)))
        elif operation == "form" and field in ("event_id", "message_id"):
            parent[key] = draw(uuid_forms(draw(st.uuids())))
        else:
            parent[key] = draw(wrong_values)
    if draw(st.booleans()):
        text = json.dumps(
            tree, ensure_ascii=draw(st.booleans()), indent=draw(st.none() | st.just(1))
        )
        body = text.encode("utf-8", "surrogatepass")
    else:
        body = compact(tree).decode("utf-8", "surrogatepass").encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 2))):
        # Text-level damage: a byte dropped, changed or inserted; a key repeated; a suffix.
        position = draw(st.integers(0, len(body)))
        damage = draw(
            st.sampled_from([b"", b"\x00", b"\xff", b"\xed\xa0\x80", b"\\ud800", b'"', b"{", b"]"])
        )
        skip = draw(st.integers(0, 2))
        body = body[:position] + damage + body[position + skip :]
    for _ in range(draw(st.integers(0, 3))):
        # A letter written as a \u escape: the same text within a string or key, damage elsewhere.
        position = draw(st.integers(0, max(0, len(body) - 1)))
        if body[position : position + 1].isalpha():
            escape = f"\\u{body[position]:04x}".encode()
            body = body[:position] + escape + body[position + 1 :]
    return body


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bodies())
def test_mutated_messages_end_alike(body: bytes) -> None:
    assert_decoded_alike(body)


# --- the forms and limits where the two parsers differ, one by one ------------------------------


def typical_body(**changes: Any) -> bytes:
    """A one-upsert message as our publishers write it, with `changes` made to its JSON: keys of
    the event, or of its document when prefixed `document.`."""
    event = asset_upserted(
        Arrival("prv_x", EventSource.PUSH, T0, "trace"),
        asset_id="a1",
        updated_at=T0,
        accepted_at=T0,
        document={"id": "a1", "status": "active", "name": "18900 Mansfield St"},
        content_hash=HASH,
    )
    tree = json.loads(encode_message(message_for([event])))
    for key, value in changes.items():
        target = tree["events"][0]
        if key.startswith("document."):
            target, key = target["payload"]["document"], key.removeprefix("document.")
        elif key.startswith("payload."):
            target, key = target["payload"], key.removeprefix("payload.")
        target[key] = value
    return compact(tree)


def compact(tree: Any) -> bytes:
    """JSON as orjson writes it (the standard library for integers beyond 64 bits)."""
    return json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode()


def with_document_text(text: bytes) -> bytes:
    return typical_body(**{"document.placeholder": "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', text)


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        (typical_body(), True),
        (typical_body(updated_at="2025-06-01T12:00:00.1234567Z"), False),  # rounds vs truncates
        (typical_body(updated_at="2025-06-01T12:00:00.9999999Z"), False),
        (typical_body(updated_at="2025-06-01T12:00:00"), False),  # naive
        (typical_body(updated_at="2025-06-01t12:00:00z"), False),
        (typical_body(updated_at="2025-06-01T12:00Z"), False),
        (typical_body(updated_at="2025-06-01T12:00:00+00:60"), False),
        (typical_body(updated_at="2025-W22-7T12:00:00Z"), False),
        (typical_body(updated_at=1748779200), False),
        (typical_body(updated_at="2025-02-30T12:00:00Z"), False),
        (typical_body(updated_at="2025-06-01T12:00:00-23:59"), True),
        (typical_body(event_id="{12345678-1234-5678-1234-567812345678}"), False),
        (typical_body(event_id="12345678123456781234567812345678"), True),
        (typical_body(event_id="12345678-1234-5678-1234-56781234567A"), True),
        (typical_body(**{"payload.content_hash": HASH + "\n"}), False),
        (typical_body(**{"payload.content_hash": HASH.upper()}), False),
        (typical_body(**{"payload.content_hash": " " + HASH[1:]}), False),
        (typical_body(**{"payload.document": ["a1"]}), False),
        (typical_body(**{"payload.document": None}), False),
        (typical_body(**{"payload.extra": 1}), False),
        (typical_body(extra=1), False),
        (typical_body(type="asset.gone"), False),
        (typical_body(schema_version=1.0), False),
        (typical_body(schema_version=True), False),
        (typical_body(schema_version=2), False),
        (typical_body(provider_id="é" * 64), True),
        (typical_body(provider_id="😀" * 65), False),
        (typical_body(trace_id="x" * 129), False),
        (typical_body(**{"document.id": 1}), False),
        (typical_body(**{"document.id": None}), True),
        (typical_body(**{"document.status": ["active"]}), False),
        (typical_body(**{"document.note": "nul \x00 inside"}), True),  # Postgres refuses it later
        (typical_body(**{"document.big": 10**40}), True),
        (typical_body(**{"document.big": float("1e300")}), True),
        (with_document_text(b"1" * 4000), True),
        (
            with_document_text(b"1" * 4001),
            False,
        ),  # within pydantic's 4,300: left to it all the same
        (with_document_text(b"1" * 4301), False),
        (with_document_text(b"NaN"), False),
        (with_document_text(b"Infinity"), False),
        (with_document_text(b"1e999"), True),
        (with_document_text(b'"\\ud800"'), False),
        (with_document_text(b'"\\udc00\\ud800"'), False),
        (with_document_text(b'"\\ud83d\\ude00"'), True),
        (with_document_text(b'"\xff"'), False),
        (with_document_text(b'"\xed\xa0\x80"'), False),
        (with_document_text(b'"raw \x01 control"'), False),
        (with_document_text(b"[" * 60 + b"]" * 60), True),
        (with_document_text(b"[" * 100 + b"]" * 100), False),
        (with_document_text(b"[" * 196 + b"]" * 196), False),
        (with_document_text(b"[" * 197 + b"]" * 197), False),
        (with_document_text(b"[" * 5000 + b"]" * 5000), False),
        (with_document_text(b'"' + b"[" * 100 + b'"'), True),
        (typical_body().replace(b'"id":"a1"', b'"id":"zz","id":"a1"'), True),
        (typical_body().replace(b'"provider_id"', b'"provider_id":"other","provider_id"'), True),
        (
            typical_body().replace(
                b'"type":"asset.upserted"', b'"type":"asset.deleted","type":"asset.upserted"'
            ),
            None,
        ),
        (typical_body().replace(b'"id":"a1"', b'"i\\u0064":"a1"'), True),
        (typical_body().replace(b'"asset_id"', b'"asset\\u005fid"'), True),
        (typical_body().replace(b'"asset.upserted"', b'"asset\\u002eupserted"'), True),
        (typical_body().replace(b'"push"', b'"pu\\u0073h"'), True),
        (typical_body() + b" ", True),
        (typical_body() + b" x", False),
        (b'{"message_id":"12345678-1234-5678-1234-567812345678","events":[]}', False),
        (b"", False),
        (b"[]", False),
    ],
)
def test_where_the_parsers_differ(body: bytes, raw: bool | None) -> None:
    decoded_raw = assert_decoded_alike(body)
    if raw is not None:
        assert decoded_raw == raw


@example(b"")
@given(st.binary(max_size=64))
def test_any_bytes_end_alike(body: bytes) -> None:
    assert_decoded_alike(body)
