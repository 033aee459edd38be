"""Libraries' log records (asyncpg's, say, with a traceback) come out in the service's format: in
JSON, each one JSON document on one line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from rwasync.platform.logging import configure_logging

pytestmark = pytest.mark.unit


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_a_library_warning_with_a_traceback_is_one_json_line(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("ingest-api", "INFO", "json")
    try:
        raise ConnectionRefusedError("connect call failed")
    except ConnectionRefusedError:
        logging.getLogger("asyncpg.pool").warning(
            "Failed to restore the pool connection floor; retrying", exc_info=True
        )
    logging.getLogger("asyncpg.pool").info("below the level: not written")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "Failed to restore the pool connection floor; retrying"
    assert record["logger"] == "asyncpg.pool"
    assert record["level"] == "warning"
    assert record["service"] == "ingest-api"
    assert "ConnectionRefusedError: connect call failed" in record["exception"]
    assert "timestamp" in record
