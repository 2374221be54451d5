"""IIN and BIN: Kazakhstan's 12-digit individual and business identification numbers (docs/signing.md).

Both carry a check digit computed with weights 1..11 (or, when that gives 10, with 3..11,1,2) over the
first eleven digits, modulo 11. On top of that, the structure is checked: an IIN starts with a real birth
date and a century/sex digit 1-6; a BIN starts with a registration year and month, an entity type (4, 5, 6)
and an attribute (0-3).
"""

from __future__ import annotations

from datetime import date

_WEIGHTS_1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_WEIGHTS_2 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)

_CENTURY = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}


def check_digit(first11: str) -> int | None:
    """The check digit for the first eleven digits, or None when no valid digit exists."""
    digits = [int(c) for c in first11]
    for weights in (_WEIGHTS_1, _WEIGHTS_2):
        value = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
        if value != 10:
            return value
    return None


def _twelve_digits(number: str) -> bool:
    return len(number) == 12 and number.isascii() and number.isdigit()


def _checksum_ok(number: str) -> bool:
    expected = check_digit(number[:11])
    return expected is not None and expected == int(number[11])


def iin_problem(number: str) -> str | None:
    """Why `number` is not a valid IIN, or None when it is."""
    if not _twelve_digits(number):
        return "an IIN is exactly 12 digits"
    century_digit = int(number[6])
    if century_digit not in _CENTURY:
        return "the 7th digit of an IIN (century and sex) must be 1-6"
    year = _CENTURY[century_digit] + int(number[0:2])
    try:
        date(year, int(number[2:4]), int(number[4:6]))
    except ValueError:
        return "the first six digits of an IIN must be a real birth date (YYMMDD)"
    if not _checksum_ok(number):
        return "the check digit of the IIN does not match"
    return None


def bin_problem(number: str) -> str | None:
    """Why `number` is not a valid BIN, or None when it is."""
    if not _twelve_digits(number):
        return "a BIN is exactly 12 digits"
    if not 1 <= int(number[2:4]) <= 12:
        return "digits 3-4 of a BIN must be the registration month (01-12)"
    if number[4] not in "456":
        return "the 5th digit of a BIN (entity type) must be 4, 5 or 6"
    if number[5] not in "0123":
        return "the 6th digit of a BIN (attribute) must be 0-3"
    if not _checksum_ok(number):
        return "the check digit of the BIN does not match"
    return None


def is_valid_iin(number: str) -> bool:
    return iin_problem(number) is None


def is_valid_bin(number: str) -> bool:
    return bin_problem(number) is None


def with_check_digit(first11: str) -> str | None:
    """Complete eleven digits with their check digit (used to mint test numbers); None if impossible."""
    digit = check_digit(first11)
    return None if digit is None else first11 + str(digit)
