"""Timestamps as the hub stores them: UTC ISO-8601 strings of one fixed shape, so they sort as text."""

from datetime import UTC, datetime


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """Aware datetime → `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (naive values are taken as UTC)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def parse(value: str | datetime | None) -> datetime | None:
    """Lenient parse of what agents send (`Z` suffix, naive = UTC)."""
    if value is None or value == "":
        return None
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso_any(value: str | datetime | None) -> str | None:
    """Normalise a timestamp from a payload; None when missing or unparseable."""
    try:
        return iso(parse(value))
    except (TypeError, ValueError):
        return None
