"""Identifiers read by cameras: Chinese plates (GA 36-2018) and ISO 6346 container numbers.

Camera firmware is sloppy about both (full-width letters, middle dots, hyphens, spaces, lower case,
"无车牌" instead of an empty field), while the lane compares them against customs records character by
character. So every camera driver normalises here, and only a well-formed identifier leaves a driver:
a plate that is not a GA 36-2018 shape and a container number whose check digit fails are reported as
unreadable (`None`), never as a value (PROTOCOLS.md §6.4, §6.5).

Pure and dependency-free on purpose: the drivers must not pull in the OCR stack of `edge_agent.vision`.
"""

import re
import unicodedata

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_AUTH = "[A-HJ-NP-Z]"  # issuing-authority letter: never I or O
_SER = "[A-HJ-NP-Z0-9]"  # serial alphanumerics: never I or O
_NEV = "[ABCDEFGHJK]"  # new-energy marker (D/F official, the rest in common use [I/V-code])
_SPECIAL = "学警挂港澳领使"
PLATE_RE = re.compile(
    rf"^[{PROVINCES}]{_AUTH}"
    rf"(?:{_SER}{{5}}"  # ordinary, 7 characters
    rf"|{_SER}{{4}}[{_SPECIAL}]"  # special final character
    rf"|{_NEV}{_SER}[0-9]{{4}}"  # small new-energy, 8 characters
    rf"|[0-9]{{5}}{_NEV})$"  # large new-energy, 8 characters
)
_DROP = set(" \t\r\n·•∙・.-_—–")
#: What cameras write when they saw a vehicle but no plate.
NO_PLATE_WORDS = {"", "UNKNOWN", "NONE", "NULL", "无车牌", "无牌", "无牌车", "车牌", "NOPLATE", "-"}


def clean_plate_text(text: str) -> str:
    """Full-width → ASCII, drop spaces, middle dots and hyphens, upper-case."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text if c not in _DROP).upper()


def normalise_plate(text: str | None) -> str | None:
    """The plate in canonical form, or None if the camera saw none or the text is no valid plate."""
    if text is None:
        return None
    cleaned = clean_plate_text(text)
    if cleaned in NO_PLATE_WORDS:
        return None
    return cleaned if PLATE_RE.match(cleaned) else None


# --------------------------------------------------------------------------- ISO 6346
def _letter_values() -> dict[str, int]:
    values, v = {}, 10
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if v % 11 == 0:  # 11, 22 and 33 are skipped
            v += 1
        values[letter] = v
        v += 1
    return values


_LETTER_VALUE = _letter_values()
CONTAINER_RE = re.compile(r"^[A-Z]{3}[UJZ][0-9]{7}$")


def iso6346_check_digit(first_ten: str) -> int:
    """Check digit of owner code + category + 6-digit serial: Σ value·2^i mod 11, 10 → 0."""
    total = sum((int(c) if c.isdigit() else _LETTER_VALUE[c]) << i for i, c in enumerate(first_ten))
    return total % 11 % 10


def normalise_container(text: str | None) -> str | None:
    """The 11-character container number if it is well-formed and its check digit holds, else None."""
    if text is None:
        return None
    cleaned = clean_plate_text(text)
    if not CONTAINER_RE.match(cleaned):
        return None
    return cleaned if iso6346_check_digit(cleaned[:10]) == int(cleaned[10]) else None
