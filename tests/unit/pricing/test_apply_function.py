"""`price_apply_tick_batch_2` (migration 0028) runs pricing's apply statement after the stripe
locks in one round trip; the statement's text lives in `rwasync.pricing.queries` too (it shares
the recording part with the checked path and the receipts' statements with rwasync.store.receipts),
and the two must not drift apart: a change to either needs a new migration replacing the function.
(That it locks what every other writer of prices locks: tests/integration/test_pricing_apply.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rwasync.platform.migrations as migrations
from rwasync.pricing import queries

pytestmark = pytest.mark.unit


def squeezed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def function_sql() -> str:
    folder = Path(migrations.__file__).parent
    return (folder / "0028_a_price_history_policed_default.sql").read_text()


def test_the_function_runs_the_apply_statement_verbatim() -> None:
    assert squeezed(queries.APPLY_TICKS) in squeezed(function_sql())
