"""ISO 6346 container numbers: check digit, validation and parsing (PROTOCOLS.md §6.5).

Pure Python, no OpenCV: the gate controller and tests use it without the `vision` extra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Letter values skip multiples of 11 (11, 22, 33) so that no two letters collide mod 11.
LETTER_VALUES: dict[str, int] = {}
_value = 10
for _letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    if _value % 11 == 0:
        _value += 1
    LETTER_VALUES[_letter] = _value
    _value += 1

#: Equipment category letters: U freight, J detachable equipment, Z trailer/chassis (ISO 6346).
CATEGORY_LETTERS = "UJZ"
_NUMBER_RE = re.compile(r"^[A-Z]{3}[UJZ][0-9]{6}[0-9]$")
_SIZE_TYPE_RE = re.compile(r"^[1-9LMNP][0-9A-Z][A-Z][0-9A-Z]$")


def char_value(char: str) -> int:
    """Numeric value of one owner-code/serial character."""
    if char.isdigit():
        return int(char)
    try:
        return LETTER_VALUES[char]
    except KeyError:
        raise ValueError(f"not an ISO 6346 character: {char!r}") from None


def check_digit(first_ten: str) -> int:
    """Check digit for owner code + category + serial (10 characters)."""
    if len(first_ten) != 10:
        raise ValueError("need exactly 10 characters (owner code, category, serial)")
    total = sum(char_value(c) * (1 << i) for i, c in enumerate(first_ten.upper()))
    return total % 11 % 10


def is_valid(number: str) -> bool:
    """True only for a well-formed 11-character number whose check digit matches."""
    number = number.strip().upper()
    if not _NUMBER_RE.match(number):
        return False
    return check_digit(number[:10]) == int(number[10])


def is_size_type(code: str) -> bool:
    """Loose shape check for an ISO 6346 size/type code such as ``45G1`` or ``22R1``."""
    return bool(_SIZE_TYPE_RE.match(code.upper()))


@dataclass(frozen=True)
class ContainerNumber:
    """A validated container number split into its parts."""

    owner: str
    category: str
    serial: str
    check: str

    @property
    def text(self) -> str:
        return f"{self.owner}{self.category}{self.serial}{self.check}"

    @classmethod
    def parse(cls, number: str) -> ContainerNumber:
        """Parse a number; raises ValueError if it fails the format or the check digit."""
        number = number.strip().upper().replace(" ", "")
        if not is_valid(number):
            raise ValueError(f"not a valid ISO 6346 container number: {number!r}")
        return cls(owner=number[:3], category=number[3], serial=number[4:10], check=number[10])
