"""structlog set-up: readable lines in a terminal, JSON lines otherwise; secrets never logged."""

import logging
import sys
from typing import Any

import structlog

_SECRET_KEYS = frozenset(
    {"authorization", "password", "secret", "token", "api_key", "cookie", "proxy-authorization"}
)


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and the stdlib root logger once per process; logs go to stderr."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # One write per line (PrintLogger made two: the line, then its newline), so the lines of
        # processes sharing a pipe (ingest-api with PROCESSES > 1) do not run together.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through the stdlib: their records (WARNING and above) are rendered like the
    # service's own, so a JSON log stays one JSON document a line even when asyncpg logs a
    # traceback.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    logging.getLogger("aio_pika.tools").addFilter(closed_channel_noise)
    logging.getLogger("aiormq.connection").addFilter(connect_attempt_noise)
    logging.getLogger("asyncpg.pool").addFilter(pool_floor_without_traceback)


def closed_channel_noise(record: logging.LogRecord) -> bool:
    """Leaves out aio-pika's error for a channel's close callback that finds the channel already
    closed (`ChannelInvalidStateError`): three such `[error]` lines came with every broker drop,
    though nothing was wrong but the drop, which the broker module logs itself. Every other
    callback error passes."""
    args = record.args
    return not (
        record.msg == "Callback %r error: %s: %s"
        and isinstance(args, tuple)
        and len(args) == 3
        and args[1] == "ChannelInvalidStateError"
    )


def connect_attempt_noise(record: logging.LogRecord) -> bool:
    """Leaves out aiormq's error for a connect attempt that failed (refused, unreachable), which
    it raises on to the caller: the broker module retries and warns itself. While the broker
    was away it came about once a second at `level: error`, an outage the service rides out
    paging whoever alerts on errors (operator trial)."""
    return record.msg != "error when creating transport: %r"


def pool_floor_without_traceback(record: logging.LogRecord) -> bool:
    """asyncpg's warning that it could not reconnect its pool's floor, which comes about once a
    second while Postgres is away, as one line naming the error instead of a full traceback each
    time (an operator's trial)."""
    if record.msg.startswith("Failed to restore the pool connection floor") and record.exc_info:
        error = record.exc_info[1]
        record.msg = "Failed to restore the pool connection floor; retrying (%s: %s)"
        record.args = (type(error).__name__, error)
        record.exc_info = None
    return True
