"""Parsing of percentages typed into ownership forms."""

import pytest

from fetlock.practice.schemas import parse_percent


@pytest.mark.parametrize("text", ["inf", "-Infinity", "NaN", "abc", ""])
def test_parse_percent_rejects_non_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="is not a percentage"):
        parse_percent(text, field="owner_percent")


@pytest.mark.parametrize(("text", "share"), [("50", 5000), ("33.33 %", 3333)])
def test_parse_percent_reads_hundredths(text: str, share: int) -> None:
    assert parse_percent(text, field="owner_percent") == share


def test_parse_percent_rejects_third_decimal() -> None:
    with pytest.raises(ValueError, match="more than two decimal places"):
        parse_percent("33.333", field="owner_percent")
