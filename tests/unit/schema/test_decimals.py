"""`normalize_decimal`: the one rendering of decimals in documents, hashes and APIs."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _expanded(number: Decimal) -> str:
    """The oracle: Python's own fixed-point rendering, trailing zeros and `-0` trimmed."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@settings(max_examples=2000)
@given(
    sign=st.sampled_from(["", "-"]),
    whole=st.text("0123456789", min_size=1, max_size=45),
    fraction=st.text("0123456789", max_size=20),
    exponent=st.one_of(st.none(), st.integers(-80, 80)),
)
def test_every_written_form_renders_like_the_fixed_point_oracle(
    sign: str, whole: str, fraction: str, exponent: int | None
) -> None:
    literal = sign + whole + (f".{fraction}" if fraction else "")
    if exponent is not None:
        literal += f"E{exponent:+d}"
    number = Decimal(literal)
    text = normalize_decimal(number)
    assert text == _expanded(number)
    assert plain_digit_count(number) == len(text.lstrip("-").replace(".", ""))
