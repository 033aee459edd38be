"""Validation errors as providers see them: one JSON pointer and one plain message per problem.

pydantic's error list is translated here, once, into `FieldError`s whose messages name the rule
that was broken ("must be at most 128 characters"), never pydantic's internals.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# Free text must not carry NUL: every text field has this pattern, so its error is recognised.
NO_NUL_PATTERN: Final = r"^[^\x00]*$"

# Error types raised by rwasync's own validators start with this; their message is final.
CUSTOM_ERROR_PREFIX: Final = "rwasync."

# A pathological document could yield one error per byte; a response lists at most this many.
MAX_REPORTED_ERRORS: Final = 100

# The largest item (one asset, one price tick) a batch or a feed takes, in bytes as sent, unless
# told otherwise: the default of ingest-api's limit on the body of a single-item call, the
# setting below, which feed-poller reads too. An item that a push of it alone would have refused
# (413) is refused in a batch or a feed as well: as that item, the others going on.
MAX_ITEM_BYTES: Final = 1024 * 1024
MAX_ITEM_SETTING: Final = "RWASYNC_INGEST_MAX_BODY_BYTES"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem: `pointer` is an RFC 6901 JSON pointer into the document ("" is the root)."""

    pointer: str
    message: str
    # A truncated list's last entry ("and N more errors") stands for the N errors it hides.
    hidden: int = field(default=0, compare=False)

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message}


def _more_errors(hidden: int) -> FieldError:
    return FieldError(pointer="", message=f"and {hidden} more errors", hidden=hidden)


def error_count(errors: Sequence[FieldError]) -> int:
    """How many errors `errors` reports, those a truncated list hides included."""
    return sum(error.hidden or 1 for error in errors)


class AssetInvalid(Exception):
    """The document breaks the contract; `errors` lists every problem found (HTTP 422)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.pointer or '/'}: {e.message}" for e in errors[:5]))
        self.errors = errors


def json_pointer(location: Iterable[str | int]) -> str:
    """RFC 6901 pointer for a path of keys and indexes (`~` and `/` escaped)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


# Messages for patterns other than NO_NUL_PATTERN, registered by the types that use them.
PATTERN_MESSAGES: dict[str, str] = {}


def _bound(value: Any) -> str:
    if isinstance(value, int) and value >= 10**6 and str(value).rstrip("0") == "1":
        return f"10^{len(str(value)) - 1}"
    return str(value)


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    if kind.startswith(CUSTOM_ERROR_PREFIX):
        return error["msg"]
    match kind:
        case "missing":
            return "is required"
        case "extra_forbidden":
            return "unknown field"
        case "string_type":
            return "must be a string"
        case "string_unicode":
            return "must be valid Unicode text (no unpaired surrogates)"
        case "string_too_short":
            if ctx.get("min_length") == 1:
                return "must not be empty"
            return f"must be at least {ctx.get('min_length')} characters"
        case "string_too_long":
            return f"must be at most {ctx.get('max_length')} characters"
        case "string_pattern_mismatch":
            pattern = ctx.get("pattern")
            if pattern == NO_NUL_PATTERN:
                return "must not contain NUL characters"
            return PATTERN_MESSAGES.get(str(pattern), f"must match the pattern {pattern}")
        case "literal_error" | "enum":
            return f"must be one of {ctx.get('expected')}"
        case "greater_than":
            return f"must be greater than {_bound(ctx.get('gt'))}"
        case "greater_than_equal":
            return f"must be at least {_bound(ctx.get('ge'))}"
        case "less_than":
            return f"must be less than {_bound(ctx.get('lt'))}"
        case "less_than_equal":
            return f"must be at most {_bound(ctx.get('le'))}"
        case "too_long":
            unit = "keys" if ctx.get("field_type") == "Dictionary" else "items"
            return f"must have at most {ctx.get('max_length')} {unit}"
        case "too_short":
            unit = "keys" if ctx.get("field_type") == "Dictionary" else "items"
            return f"must have at least {ctx.get('min_length')} {unit}"
        case "model_type" | "model_attributes_type" | "dict_type" | "mapping_type":
            return "must be an object"
        case "list_type" | "iterable_type":
            return "must be an array"
        case "bool_type" | "bool_parsing":
            return "must be true or false"
        case "value_error" | "assertion_error":
            return str(ctx.get("error", error["msg"]))
        case _:
            # pydantic's own wording, for anything this table does not know yet.
            return error["msg"]


def field_errors(exc: ValidationError) -> list[FieldError]:
    """The provider-facing errors of a pydantic ValidationError, in document order."""
    errors: list[FieldError] = []
    # Only the reported ones are worded: a document of a million unknown keys has a million
    # errors, and turning each into text took seconds of CPU for a 16 MiB body.
    for error in exc.errors(include_url=False, include_input=False)[:MAX_REPORTED_ERRORS]:
        # A bad dict key is reported by pydantic at (..., key, "[key]"): point at the key.
        location = list(error["loc"])
        if len(location) > 1 and location[-1] == "[key]":
            location.pop()
        errors.append(FieldError(pointer=json_pointer(location), message=_message(error)))
    if exc.error_count() > len(errors):
        hidden = exc.error_count() - (MAX_REPORTED_ERRORS - 1)
        return [*errors[: MAX_REPORTED_ERRORS - 1], _more_errors(hidden)]
    return errors


def item_too_large(size: int, limit: int, what: str = "asset") -> FieldError:
    """Why an item of `size` bytes, over `limit`, is refused (at the item itself)."""
    return FieldError(
        pointer="",
        message=f"the item is {size} bytes, over the limit of {limit} bytes for one {what} "
        f"({MAX_ITEM_SETTING})",
    )


def truncated(errors: list[FieldError]) -> list[FieldError]:
    """At most MAX_REPORTED_ERRORS errors, the last one saying how many more there were."""
    if len(errors) <= MAX_REPORTED_ERRORS:
        return errors
    hidden = error_count(errors) - (MAX_REPORTED_ERRORS - 1)
    return [*errors[: MAX_REPORTED_ERRORS - 1], _more_errors(hidden)]
