"""Identifiers read by cameras: Chinese plates (GA 36-2018) and ISO 6346 container numbers.

Camera firmware is sloppy about both (full-width letters, middle dots, hyphens, spaces, lower case,
"无车牌" instead of an empty field), while the lane compares them against customs records character by
character. So every camera driver normalises here, and only a well-formed identifier leaves a driver:
a plate that is not a GA 36-2018 shape and a container number whose check digit fails are reported as
unreadable (`None`), never as a value (PROTOCOLS.md §6.4, §6.5).

The formats themselves (GA 36-2018 positions, the ISO 6346 check digit) are defined once, in the pure
modules `edge_agent.vision.plate_format` and `edge_agent.vision.iso6346`, which import no OCR stack:
the drivers stay light and the vision reader and the camera drivers cannot drift apart.
"""

import unicodedata

from edge_agent.vision.iso6346 import check_digit as iso6346_check_digit
from edge_agent.vision.iso6346 import is_valid as is_valid_container
from edge_agent.vision.plate_format import is_valid_plate

__all__ = ["clean_plate_text", "iso6346_check_digit", "normalise_container", "normalise_plate"]

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
    return cleaned if is_valid_plate(cleaned) else None


# --------------------------------------------------------------------------- ISO 6346
def normalise_container(text: str | None) -> str | None:
    """The 11-character container number if it is well-formed and its check digit holds, else None."""
    if text is None:
        return None
    cleaned = clean_plate_text(text)
    return cleaned if is_valid_container(cleaned) else None
