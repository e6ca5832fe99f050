"""Pure pieces of the fence-sensor watch: the debounced alarm contact and the fence line protocol.

Kept free of I/O so the decisions (when does a contact count as open, what is a valid line) can be
property-tested on their own; `edge_agent.fence_sensors` does the polling, sockets and reporting.

The line protocol **(design)** — a fibre/cable controller's vendor protocol is mapped to this in a
gateway (docs/DEVICES.md, "Fence line protocol"): one JSON object per line, UTF-8, `\\n`-terminated::

    {"zone": "n-01", "kind": "intrusion", "position_m": 412.5, "level": 78}
    {"zone": "n-01", "kind": "tamper"}
    {"zone": "n-01", "kind": "clear"}
    {"kind": "heartbeat"}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

Edge = Literal["raised", "cleared"]
LineKind = Literal["intrusion", "tamper", "clear", "heartbeat"]
LINE_KINDS: tuple[str, ...] = ("intrusion", "tamper", "clear", "heartbeat")
MAX_LINE_BYTES = 4096
EXPECTED_LINE = (
    'one JSON object per line: {"zone": "<controller zone>", "kind": "intrusion|tamper|clear", '
    '"position_m": <metres along the segment, optional>, "level": <0-100, optional>} or {"kind": "heartbeat"}'
)


class ContactTracker:
    """One alarm contact of a fence controller, debounced: `update` says when an alarm is raised/cleared.

    `normally_closed`: the contact is closed (the input reads 1) while all is well, so a cut wire reads
    as an alarm. The tracker starts *secure*, and every change — to alarm and back — counts only once the
    raw reading has held it for `hold_s`: a contact chattering in pulses shorter than that never
    produces an event, and raises and clears strictly alternate.
    """

    __slots__ = ("hold_s", "normally_closed", "active", "_candidate_since")

    def __init__(self, hold_s: float, *, normally_closed: bool = True) -> None:
        self.hold_s = hold_s
        self.normally_closed = normally_closed
        self.active = False  # the accepted (debounced) state: True = in alarm
        self._candidate_since: float | None = None  # when the raw reading first differed from `active`

    def alarm_reading(self, bit: bool) -> bool:
        """Whether one raw input bit means "alarm" under this contact's polarity."""
        return not bit if self.normally_closed else bool(bit)

    def update(self, bit: bool, now: float) -> Edge | None:
        """Feed one sample of the input taken at `now` (monotonic seconds); the accepted edge, if any."""
        alarm = self.alarm_reading(bit)
        if alarm == self.active:
            self._candidate_since = None
            return None
        if self._candidate_since is None:
            self._candidate_since = now
        if now - self._candidate_since < self.hold_s:
            return None
        self.active, self._candidate_since = alarm, None
        return "raised" if alarm else "cleared"


class FenceLineError(ValueError):
    """A line from a fence controller that does not follow the line protocol; the message says why."""


@dataclass(frozen=True, slots=True)
class FenceLine:
    """One parsed line of the fence line protocol."""

    kind: LineKind
    zone: str | None = None
    position_m: float | None = None
    level: float | None = None
    detail: str | None = None


def parse_fence_line(raw: bytes) -> FenceLine:
    """Parse one line (without or with its `\\n`); FenceLineError names the field and what was expected."""
    if len(raw) > MAX_LINE_BYTES:
        raise FenceLineError(f"line of {len(raw)} bytes, at most {MAX_LINE_BYTES} expected")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FenceLineError(f"not UTF-8 ({exc.reason}); expected {EXPECTED_LINE}") from None
    except json.JSONDecodeError as exc:
        raise FenceLineError(
            f"not JSON ({exc.msg} at column {exc.colno}); expected {EXPECTED_LINE}"
        ) from None
    if not isinstance(obj, dict):
        raise FenceLineError(f"a JSON {type(obj).__name__}, expected {EXPECTED_LINE}")
    kind = obj.get("kind")
    if kind not in LINE_KINDS:
        raise FenceLineError(f"kind {kind!r}: expected one of {', '.join(LINE_KINDS)}")
    if kind == "heartbeat":
        return FenceLine("heartbeat")
    zone = obj.get("zone")
    if isinstance(zone, int) and not isinstance(zone, bool):
        zone = str(zone)
    if not isinstance(zone, str) or not zone or len(zone) > 64:
        raise FenceLineError(f"zone {zone!r}: expected the controller's zone id (1 to 64 characters)")
    position = _number(obj, "position_m", "metres along the segment, >= 0", lo=0.0)
    level = _number(obj, "level", "signal level 0-100", lo=0.0, hi=100.0)
    detail = obj.get("detail")
    if detail is not None and not isinstance(detail, str):
        raise FenceLineError(f"detail {detail!r}: expected a string")
    return FenceLine(kind, zone, position, level, detail[:200] if detail else None)


def _number(obj: dict, key: str, what: str, *, lo: float, hi: float | None = None) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FenceLineError(f"{key} {value!r}: expected a number ({what})")
    if value < lo or (hi is not None and value > hi):
        raise FenceLineError(f"{key} {value!r}: expected {what}")
    return float(value)


def encode_fence_line(kind: str, zone: str | None = None, **fields: object) -> bytes:
    """A line as a controller (or the simulator) sends it."""
    obj: dict[str, object] = {"kind": kind}
    if zone is not None:
        obj["zone"] = zone
    obj.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"
