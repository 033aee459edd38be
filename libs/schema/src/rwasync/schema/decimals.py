"""Decimal numbers as rwasync renders them: plain digits, no exponent, no trailing zeros.

Money never passes through float; this is the one rendering used in documents, hashes and APIs.
"""

from decimal import Decimal
from typing import Final

# A validated decimal has at most this many digits when written out without an exponent.
MAX_DECIMAL_DIGITS: Final = 100

# Rendering refuses anything longer: `1E+999999999` is a few bytes of JSON but a gigabyte of text.
MAX_RENDERED_DIGITS: Final = 1000


def _significand(number: Decimal) -> tuple[int, str, int]:
    """(sign, digits, exponent) of a finite decimal with trailing zeros moved into the exponent.

    Done on the tuple rather than with `Decimal.normalize()`, which rounds to the context's
    precision (28 digits) and would silently change long numbers.
    """
    sign, digit_tuple, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: the caller checked
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return 0, "0", 0
    stripped = digits.rstrip("0")
    return sign, stripped, exponent + len(digits) - len(stripped)


def plain_digit_count(number: Decimal) -> int:
    """How many digits `normalize_decimal(number)` writes (the leading `0` of `0.5` included)."""
    if not number.is_finite():
        raise ValueError(f"{number} is not a finite number")
    _, digits, exponent = _significand(number)
    if exponent >= 0:
        return len(digits) + exponent
    # `123.45` writes its digits; `0.005` adds the zeros between the point and its digits.
    return len(digits) if -exponent < len(digits) else 1 - exponent


def normalize_decimal(number: Decimal) -> str:
    """`50.0` → `"50"`, `1E+2` → `"100"`, `0.50` → `"0.5"`, `-0` → `"0"`.

    Raises ValueError for NaN, infinities and numbers longer than MAX_RENDERED_DIGITS digits.
    """
    count = plain_digit_count(number)
    if count > MAX_RENDERED_DIGITS:
        raise ValueError(f"number has {count} digits, more than {MAX_RENDERED_DIGITS}")
    sign, digits, exponent = _significand(number)
    if exponent >= 0:
        text = digits + "0" * exponent
    else:
        point = len(digits) + exponent  # where the decimal point falls among the digits
        text = f"{digits[:point]}.{digits[point:]}" if point > 0 else f"0.{'0' * -point}{digits}"
    return f"-{text}" if sign else text
