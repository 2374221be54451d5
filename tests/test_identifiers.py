"""IIN and BIN check digits and structure (docs/signing.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.identifiers import (
    bin_problem,
    check_digit,
    iin_problem,
    is_valid_bin,
    is_valid_iin,
    with_check_digit,
)


@pytest.mark.parametrize("iin", ["871008401427", "760212350620", "830717350867"])
def test_valid_iins_from_the_domain_are_accepted(iin: str) -> None:
    assert iin_problem(iin) is None


def test_830717350867_needs_the_second_weights() -> None:
    digits = [int(c) for c in "83071735086"]
    assert sum(d * w for d, w in zip(digits, range(1, 12), strict=True)) % 11 == 10
    assert check_digit("83071735086") == 7


@pytest.mark.parametrize("bin_", ["940140000385", "990140004654"])
def test_valid_bins_from_the_domain_are_accepted(bin_: str) -> None:
    assert bin_problem(bin_) is None


def test_a_wrong_check_digit_is_refused() -> None:
    assert "check digit" in iin_problem("000813159890")


def test_the_nca_sdk_test_number_is_not_an_iin() -> None:
    assert not is_valid_iin("123456789011")


@pytest.mark.parametrize("bad", ["", "87100840142", "8710084014270", "87100840142a", "８７１００８４０１４２７"])
def test_an_iin_is_twelve_ascii_digits(bad: str) -> None:
    assert not is_valid_iin(bad)
    assert not is_valid_bin(bad)


def test_an_iin_must_start_with_a_real_birth_date() -> None:
    first11 = "871308" + "40142"  # month 13
    number = with_check_digit(first11)
    assert number is not None
    assert "birth date" in iin_problem(number)


def test_a_bin_needs_a_known_entity_type() -> None:
    number = with_check_digit("94017000038")  # type digit 7
    assert number is not None
    assert "entity type" in bin_problem(number)


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_the_check_digit_completes_any_eleven_digits_or_none(first11: str) -> None:
    number = with_check_digit(first11)
    if number is None:
        assert check_digit(first11) is None
    else:
        assert len(number) == 12
        # Changing the check digit always breaks the checksum.
        for wrong in "0123456789":
            if wrong != number[-1]:
                assert check_digit(first11) != int(wrong)


@given(
    st.dates(),
    st.sampled_from("3456"),
    st.text(alphabet="0123456789", min_size=4, max_size=4),
)
def test_iins_built_from_dates_are_valid_when_the_checksum_exists(d, century, serial) -> None:  # noqa: ANN001
    if not 1900 <= d.year <= 2099:
        return
    if (d.year >= 2000) != (century in "56"):
        return
    number = with_check_digit(d.strftime("%y%m%d") + century + serial)
    if number is not None:
        assert is_valid_iin(number)
