"""Chinese plate format (GA 36-2018, PROTOCOLS.md §6.4): normalisation and validation.

Pure Python. The same position classes drive the OCR grammar in :mod:`edge_agent.vision.ctc`,
so what the reader may output and what the validator accepts can never drift apart.
"""

from __future__ import annotations

import re
import unicodedata

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
#: Issuing-authority letter and serial letters: I and O are never used.
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "0123456789"
ALNUM = LETTERS + DIGITS
#: New-energy marker letters: A-E battery electric, F-K other (D/F original, the rest in common use).
NEV_MARKS = "ABCDEFGHJK"
#: Final characters of special ordinary-length plates (trailer, coach, police, Hong Kong, Macau).
SPECIAL_SUFFIXES = "挂学警港澳"

#: Each format is a tuple of position classes (strings of allowed characters).
ORDINARY: tuple[str, ...] = (PROVINCES, LETTERS, ALNUM, ALNUM, ALNUM, ALNUM, ALNUM)
SPECIAL: tuple[str, ...] = (PROVINCES, LETTERS, ALNUM, ALNUM, ALNUM, ALNUM, SPECIAL_SUFFIXES)
NEV_SMALL: tuple[str, ...] = (PROVINCES, LETTERS, NEV_MARKS, ALNUM, DIGITS, DIGITS, DIGITS, DIGITS)
NEV_LARGE: tuple[str, ...] = (PROVINCES, LETTERS, DIGITS, DIGITS, DIGITS, DIGITS, DIGITS, NEV_MARKS)
FORMATS: dict[str, tuple[str, ...]] = {
    "ordinary": ORDINARY,
    "special": SPECIAL,
    "nev_small": NEV_SMALL,
    "nev_large": NEV_LARGE,
}

_PROV = f"[{PROVINCES}]"
_L = "[A-HJ-NP-Z]"
_AN = "[A-HJ-NP-Z0-9]"
_PLATE_RE = re.compile(
    rf"^{_PROV}{_L}(?:{_AN}{{5}}|{_AN}{{4}}[{SPECIAL_SUFFIXES}]|[{NEV_MARKS}]{_AN}[0-9]{{4}}|[0-9]{{5}}[{NEV_MARKS}])$"
)
_SEPARATORS = " \t·•∙・.-_—–"

#: Letter<->digit look-alikes. Applied only where a position admits one kind but not the other.
LETTER_FOR_DIGIT = {"0": "D", "1": "T", "2": "Z", "5": "S", "6": "G", "8": "B", "4": "A", "7": "T"}
DIGIT_FOR_LETTER = {"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "Z": "2", "S": "5", "G": "6", "B": "8"}
#: I and O never appear on a plate; read them as the digits they look like.
ALWAYS = {"O": "0", "I": "1"}


def strip_separators(text: str) -> str:
    """Full-width to ASCII, drop spaces/middle dots/hyphens, upper-case."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text if c not in _SEPARATORS).upper()


def is_valid_plate(text: str) -> bool:
    """True if ``text`` (already normalised) is a well-formed civil plate."""
    return bool(_PLATE_RE.match(text))


def plate_kind(text: str) -> str | None:
    """Name of the format a valid plate matches (``ordinary``, ``nev_small``...), else None."""
    for name, classes in FORMATS.items():
        if len(text) == len(classes) and all(c in cls for c, cls in zip(text, classes, strict=True)):
            return name
    return None


def _fix_position(char: str, allowed: str) -> str:
    if char in allowed:
        return char
    if char in ALWAYS and ALWAYS[char] in allowed:
        return ALWAYS[char]
    if char in DIGIT_FOR_LETTER and DIGIT_FOR_LETTER[char] in allowed:
        return DIGIT_FOR_LETTER[char]
    if char in LETTER_FOR_DIGIT and LETTER_FOR_DIGIT[char] in allowed:
        return LETTER_FOR_DIGIT[char]
    return char


def normalise_plate(text: str) -> str | None:
    """Normalise raw OCR/camera text to a valid plate, or None if no format fits.

    A letter/digit look-alike is swapped only at a position whose class admits just one of the
    two (for example ``O`` in the serial becomes ``0``; ``8`` as the authority letter becomes
    ``B``). If the text fits several formats after fixing, the one needing fewest changes wins;
    a tie is ambiguous and returns None.
    """
    raw = strip_separators(text)
    best: list[tuple[int, str]] = []
    for classes in FORMATS.values():
        if len(raw) != len(classes):
            continue
        fixed = "".join(_fix_position(c, cls) for c, cls in zip(raw, classes, strict=True))
        if all(c in cls for c, cls in zip(fixed, classes, strict=True)):
            changes = sum(a != b for a, b in zip(raw, fixed, strict=True))
            best.append((changes, fixed))
    if not best:
        return None
    best.sort()
    if len(best) > 1 and best[0][0] == best[1][0] and best[0][1] != best[1][1]:
        return None
    return best[0][1]
