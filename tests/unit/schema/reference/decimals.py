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

    Read off `str(number)`, which is exact (`123.45`, `-0.005`, `1.5E+7`, never rounded), rather
    than with `Decimal.normalize()`, which rounds to the context's precision (28 digits) and would
    silently change long numbers; the text is also much cheaper than `as_tuple()`'s digits.
    """
    text = str(number)
    sign = 1 if text[0] == "-" else 0
    mantissa, _, power = text.lstrip("-").partition("E")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return 0, "0", 0
    stripped = digits.rstrip("0")
    exponent = (int(power) if power else 0) - len(fraction)
    return sign, stripped, exponent + len(digits) - len(stripped)


def _plain_digits(digits: str, exponent: int) -> int:
    if exponent >= 0:
        return len(digits) + exponent
    # `123.45` writes its digits; `0.005` adds the zeros between the point and its digits.
    return len(digits) if -exponent < len(digits) else 1 - exponent


def plain_digit_count(number: Decimal) -> int:
    """How many digits `normalize_decimal(number)` writes (the leading `0` of `0.5` included)."""
    if not number.is_finite():
        raise ValueError(f"{number} is not a finite number")
    _, digits, exponent = _significand(number)
    return _plain_digits(digits, exponent)


def normalize_decimal(number: Decimal) -> str:
    """`50.0` → `"50"`, `1E+2` → `"100"`, `0.50` → `"0.5"`, `-0` → `"0"`.

    Raises ValueError for NaN, infinities and numbers longer than MAX_RENDERED_DIGITS digits.
    """
    if not number.is_finite():
        raise ValueError(f"{number} is not a finite number")
    sign, digits, exponent = _significand(number)
    count = _plain_digits(digits, exponent)
    if count > MAX_RENDERED_DIGITS:
        raise ValueError(f"number has {count} digits, more than {MAX_RENDERED_DIGITS}")
    if exponent >= 0:
        text = digits + "0" * exponent
    else:
        point = len(digits) + exponent  # where the decimal point falls among the digits
        text = f"{digits[:point]}.{digits[point:]}" if point > 0 else f"0.{'0' * -point}{digits}"
    return f"-{text}" if sign else text
