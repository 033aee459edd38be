"""`normalize_decimal`: the one rendering of decimals in documents, hashes and APIs."""

from decimal import Decimal

import pytest

from rwasync.schema.asset import normalize_decimal
from rwasync.schema.decimals import plain_digit_count

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("number", "text"),
    [
        ("50", "50"),
        ("50.0", "50"),
        ("1E+2", "100"),
        ("0.50", "0.5"),
        ("-0.00", "0"),
        ("0", "0"),
        ("0.005", "0.005"),
        ("-1.5E-3", "-0.0015"),
        ("123.4500", "123.45"),
        ("1" * 40 + ".5", "1" * 40 + ".5"),  # more digits than Decimal's default precision
        ("1E-30", "0." + "0" * 29 + "1"),
    ],
)
def test_normal_form(number: str, text: str) -> None:
    assert normalize_decimal(Decimal(number)) == text
    assert plain_digit_count(Decimal(number)) == len(text.lstrip("-").replace(".", ""))


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "sNaN", "1E+1000"])
def test_what_cannot_be_rendered(number: str) -> None:
    with pytest.raises(ValueError):
        normalize_decimal(Decimal(number))
