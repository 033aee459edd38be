"""JSON feeds framed many items at a time (msgspec confirming a stretch of whole items) give
exactly the records the C scanner gives item by item: the same indexes, texts and fingerprints,
the same id for an unreadable item, and the same error, at the same item, for a broken file."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwasync.feeds import records
from rwasync.feeds.records import FeedInvalid, RawRecord, read_records, scanned_id

pytestmark = pytest.mark.unit

# Text that looks like the separators the framer learns, inside strings and nested objects.
_TRICKY = ['},{"id":', '}, {"id":', '},\n  {"id":', '"}', "\\", '\\"', "é", "✓", "\U0001f600"]
_text = st.one_of(st.sampled_from(_TRICKY), st.text(max_size=12))
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), _text,
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["id", "a", "b", "media", "url"]), inner, max_size=3),
    ),
    max_leaves=8,
)
_items = st.lists(
    st.one_of(
        st.fixed_dictionaries({"id": _text}, optional={"name": _text, "nested": _values}),
        st.dictionaries(st.sampled_from(["id", "name", "x"]), _values, max_size=3),
        _values,
    ),
    max_size=25,
)
_styles = st.sampled_from(
    [
        {"separators": (",", ":")},
        {"separators": (", ", ": ")},
        {"indent": 2},
        {"indent": "\t", "ensure_ascii": False},
        {"separators": (",", ":"), "ensure_ascii": False},
    ]
)


def _records(body: bytes, read_bytes: int, *, stretches: bool) -> tuple[list[Any], str | None]:
    """What reading `body` yields before it ends or fails: each record as (index, fingerprint,
    text, the id it gives), and the failure's reason."""
    found: list[Any] = []
    reader = read_records("json", io.BytesIO(body), read_bytes=read_bytes)

    def ids(record: RawRecord) -> str | None:
        assert record.text is not None
        return record.raw_id if record.raw_id is not None else scanned_id(record.text)

    try:
        for record in reader.records:
            found.append((record.index, record.fingerprint, record.text, ids(record)))
    except FeedInvalid as exc:
        return found, exc.reason
    return found, None


def _both(body: bytes, read_bytes: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield _records(body, read_bytes, stretches=True)
    with monkeypatch.context() as patched:
        patched.setattr(records, "_MAX_REFUSED_STRETCHES", 0)  # item by item throughout
        yield _records(body, read_bytes, stretches=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    items=_items,
    style=_styles,
    enveloped=st.booleans(),
    read_bytes=st.sampled_from([7, 64, 500, 4096, 1 << 20]),
    mutation=st.none()
    | st.tuples(st.integers(0, 10**6), st.sampled_from(["", "}", ",", '"', "x", "\\", "\udc80"])),
)
def test_stretches_read_as_the_scanner_reads(
    items: list[Any],
    style: dict[str, Any],
    enveloped: bool,
    read_bytes: int,
    mutation: tuple[int, str] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document: Any = items
    if enveloped:
        document = {
            "timestamp": "2025-06-01T00:00:00Z",
            "total_assets": len(items),
            "assets": items,
        }
    text = json.dumps(document, **style)
    if mutation is not None:  # one character replaced or removed: usually a broken file
        at, char = mutation
        at %= len(text)
        text = text[:at] + char + text[at + 1 :]
    body = text.encode("utf-8", "surrogateescape")
    fast, slow = _both(body, read_bytes, monkeypatch)
    assert fast == slow


def test_a_large_feed_is_mostly_framed_many_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [
        {"id": f"a-{n}", "name": "x" * (n % 50), "media": [{"u": 1}, {"u": 2}]} for n in range(3000)
    ]
    body = json.dumps(items, separators=(",", ":")).encode()
    scanned: list[int] = []
    scan = records._SCANNER

    def counting(text: str, pos: int = 0) -> Any:
        scanned.append(pos)
        return scan(text, pos)

    monkeypatch.setattr(records, "_SCANNER", counting)
    found = list(read_records("json", io.BytesIO(body), read_bytes=64 * 1024).records)
    assert [r.index for r in found] == list(range(3000))
    assert [r.text for r in found] == [json.dumps(i, separators=(",", ":")) for i in items]
    # The first items teach the separator; after that, about one item per piece read.
    assert len(scanned) < 30


@pytest.mark.parametrize("read_bytes", [50, 333, 4096])
def test_separators_inside_strings_and_nested_lists_are_never_cut(
    read_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [
        {"id": f"a-{n}", "note": '},{"id": "fake"}', "media": [{"id": 1}, {"id": 2}]}
        for n in range(200)
    ]
    body = json.dumps(items, separators=(",", ":")).encode()
    fast, slow = _both(body, read_bytes, monkeypatch)
    assert fast == slow and fast[1] is None and len(fast[0]) == 200
    # Every single-character cut of the file fails (or reads) the same way both ways.
    for at in range(0, len(body), 997):
        broken = body[:at] + body[at + 1 :]
        fast, slow = _both(broken, read_bytes, monkeypatch)
        assert fast == slow
