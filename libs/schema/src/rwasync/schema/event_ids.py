"""Event ids: time-ordered UUIDs of version 7 (RFC 9562). The first 48 bits are the Unix time in
milliseconds when the id was drawn, then the version, 74 random bits and the variant. Ids drawn
close in time sort close together, so the receipts' primary key grows at its right edge instead of
at random leaves all over it (about half the write-ahead log and CPU per receipt once the ledger
outgrows memory: `benchmarks.receipts`), and the oldest receipts are one range of that key, which
is how retention finds them (`rwasync.store.receipts.prune_decided`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final


def _unix_ms() -> int:
    return time.time_ns() // 1_000_000


def new_event_id() -> uuid.UUID:
    return _drawn(_unix_ms())


def event_id_at(instant: datetime) -> uuid.UUID:
    """An id as `new_event_id` would have drawn it at `instant` (a test's or a tool's backdated
    event)."""
    return _drawn(_ms_since_epoch(instant))


def _drawn(unix_ms: int) -> uuid.UUID:
    random = int.from_bytes(os.urandom(10))  # 12 bits before the variant, 62 after it
    return uuid.UUID(
        int=(unix_ms << 80) | (0x7 << 76) | ((random >> 62 & 0xFFF) << 64) | (0b10 << 62)
        | (random & _LOW_62)
    )  # fmt: skip


def new_event_ids(count: int) -> list[str]:
    """`count` event ids as text, from one clock reading and one read of the system's randomness:
    what `str(new_event_id())` writes, about three times cheaper each for a large batch."""
    stamp = f"{_unix_ms():012x}"
    head = f"{stamp[:8]}-{stamp[8:]}-7"
    hexes = os.urandom(10 * count).hex()
    return [
        f"{head}{hexes[i : i + 3]}-{_VARIANT[hexes[i + 3]]}{hexes[i + 4 : i + 7]}-"
        f"{hexes[i + 7 : i + 19]}"
        for i in range(0, 20 * count, 20)
    ]


def event_id_drawer(batch: int = 1000) -> Callable[[], str]:
    """A source of event ids as text for a hot loop (a feed run's passes): drawn `batch` at a
    time by `new_event_ids`, about four times cheaper each than `str(new_event_id())`. An id
    carries the instant its batch was drawn, a little before its use; take one drawer per run,
    so that no id waits long."""
    pending: list[str] = []

    def draw() -> str:
        if not pending:
            pending.extend(new_event_ids(batch))
            pending.reverse()
        return pending.pop()

    return draw


def first_event_id_at(instant: datetime) -> uuid.UUID:
    """The smallest event id drawn at or after `instant`: every id drawn before it sorts below."""
    return uuid.UUID(int=_ms_since_epoch(instant) << 80)


def _ms_since_epoch(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(milliseconds=1)


_LOW_62: Final = (1 << 62) - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The RFC 9562 variant: the top two bits of the 17th hex digit are 10.
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
