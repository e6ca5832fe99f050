"""Two-axis device health: what the operator set (enabled/locked) and what we observe (up/down).

A device is reported down only after N consecutive failures, and comes back by itself on the first success,
so one lost frame never flaps the wall screen while a dead device is never shown green.
"""

from dataclasses import dataclass, field
from typing import Literal

Observed = Literal["unknown", "up", "down"]


@dataclass
class DeviceHealth:
    device_id: str
    failures_before_down: int = 3
    enabled: bool = True
    locked: bool = False
    observed: Observed = "unknown"
    consecutive_failures: int = 0
    last_ok_at: float | None = None
    last_error: str | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: {"frames_ok": 0, "frames_bad": 0, "reconnects": 0}
    )

    def ok(self, at: float) -> bool:
        """Record a success; returns True when this changed the observed state."""
        self.counters["frames_ok"] += 1
        self.consecutive_failures = 0
        self.last_ok_at = at
        changed = self.observed != "up"
        self.observed = "up"
        return changed

    def failed(self, reason: str, *, bad_frame: bool = False) -> bool:
        """Record a failure; returns True when this made the device go down."""
        if bad_frame:
            self.counters["frames_bad"] += 1
        self.consecutive_failures += 1
        self.last_error = reason
        if self.consecutive_failures >= self.failures_before_down and self.observed != "down":
            self.observed = "down"
            return True
        return False

    def snapshot(self) -> dict:
        return {
            "device_id": self.device_id,
            "enabled": self.enabled,
            "locked": self.locked,
            "observed": self.observed,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "counters": dict(self.counters),
        }
