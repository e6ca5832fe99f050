"""The physical truth of one simulated lane: where the vehicle is, what it weighs, whether the arm is up.

Every device simulator of a lane renders this one scene in its own protocol — the weighbridge reads
`weight_kg`, the IO board reads `loops` and drives `barrier`, the RFID reader reads `tags_in_field`, the
cameras are told when a vehicle arrives — so a lane's devices always agree with each other, as real
devices looking at one real truck do. The scene is pure: time is passed in, nothing here sleeps.
"""

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Phase(StrEnum):
    EMPTY = "empty"  # nobody in the lane
    DRIVING_ON = "driving_on"  # rolling onto the arming loop and the weighbridge
    WAITING = "waiting"  # stopped on the arming loop / bridge, waiting for the arm
    CROSSING = "crossing"  # under the arm, on the safety loop
    LEAVING = "leaving"  # on the exit loop
    BACKING_OUT = "backing_out"  # gave up waiting (held or refused), reversing off the bridge


@dataclass
class VehicleSpec:
    """One vehicle and what the lane's devices will see of it; the `fault_*` fields inject misbehaviour."""

    plate: str
    epc: str | None = None
    driver_card: str | None = None
    containers: tuple[str | None, str | None] = (None, None)  # front, back
    seal_id: str | None = None
    gross_kg: float = 30_000.0
    plate_shown: str | None = (
        None  # what the camera reads; defaults to `plate` (set it to simulate a misread)
    )
    plate_confidence: float = 0.97
    patience_s: float = 25.0  # how long the driver waits for the arm before backing out
    fault_weight_never_settles: bool = False
    tailgater: "VehicleSpec | None" = None  # a second vehicle that follows closely under the open arm

    @property
    def camera_plate(self) -> str:
        return self.plate_shown if self.plate_shown is not None else self.plate


@dataclass
class Barrier:
    """Arm physics: a pulse starts travel; limit switches report only at the end positions."""

    travel_s: float = 1.5
    angle: float = 0.0  # 0 down, 1 up
    target: float = 0.0
    stuck: bool = False  # fault injection: the relay clicks but the arm does not move
    _last: float | None = None

    def command(self, up: bool) -> None:
        if not self.stuck:
            self.target = 1.0 if up else 0.0

    def advance(self, now: float) -> None:
        if self._last is not None and self.angle != self.target:
            step = (now - self._last) / self.travel_s
            self.angle = (
                min(self.target, self.angle + step)
                if self.target > self.angle
                else max(self.target, self.angle - step)
            )
        self._last = now

    @property
    def arm_up(self) -> bool:
        return self.angle >= 1.0

    @property
    def arm_down(self) -> bool:
        return self.angle <= 0.0


@dataclass
class LaneScene:
    """A lane's vehicles and barrier, advanced by `advance(now)`; device simulators read from it."""

    drive_on_s: float = 3.0
    settle_s: float = 2.0
    cross_s: float = 2.5
    leave_s: float = 2.0
    back_out_s: float = 4.0
    zero_drift_kg_per_h: float = 0.0  # fault injection: drifting zero
    seed: int = 0
    barrier: Barrier = field(default_factory=Barrier)
    queue: deque[VehicleSpec] = field(default_factory=deque)
    vehicle: VehicleSpec | None = None
    phase: Phase = Phase.EMPTY
    phase_started: float = 0.0
    on_arrival: list[Callable[[VehicleSpec, float], None]] = field(default_factory=list)
    passed: int = 0
    backed_out: int = 0
    _started: float | None = None
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def arrive(self, vehicle: VehicleSpec) -> None:
        """Queue a vehicle; it drives on as soon as the lane is empty."""
        self.queue.append(vehicle)

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase, self.phase_started = phase, now

    def advance(self, now: float) -> None:
        if self._started is None:
            self._started = now
        self.barrier.advance(now)
        elapsed = now - self.phase_started
        if self.phase is Phase.EMPTY and self.queue:
            self.vehicle = self.queue.popleft()
            self._enter(Phase.DRIVING_ON, now)
            for listener in self.on_arrival:
                listener(self.vehicle, now)
        elif self.phase is Phase.DRIVING_ON and elapsed >= self.drive_on_s:
            self._enter(Phase.WAITING, now)
        elif self.phase is Phase.WAITING:
            if self.barrier.arm_up:
                self._enter(Phase.CROSSING, now)
            elif elapsed >= self.vehicle.patience_s:
                self._enter(Phase.BACKING_OUT, now)
        elif self.phase is Phase.CROSSING and elapsed >= self.cross_s:
            self._enter(Phase.LEAVING, now)
            if self.vehicle.tailgater is not None:  # the follower drives straight on under the still-open arm
                self.queue.appendleft(self.vehicle.tailgater)
        elif self.phase is Phase.LEAVING and elapsed >= self.leave_s:
            self.passed += 1
            self.vehicle = None
            self._enter(Phase.EMPTY, now)
        elif self.phase is Phase.BACKING_OUT and elapsed >= self.back_out_s:
            self.backed_out += 1
            self.vehicle = None
            self._enter(Phase.EMPTY, now)

    # ------------------------------------------------------------------ what the devices see
    def loops(self) -> dict[str, bool]:
        p = self.phase
        return {
            "arming": p in (Phase.DRIVING_ON, Phase.WAITING, Phase.BACKING_OUT),
            "safety": p is Phase.CROSSING,
            "exit": p is Phase.LEAVING,
        }

    def weight_kg(self, now: float) -> tuple[float, bool]:
        """(gross on the bridge, in motion?) — ramps while driving on, oscillates while settling."""
        drift = 0.0
        if self._started is not None:
            drift = self.zero_drift_kg_per_h * (now - self._started) / 3600.0
        v, p, t = self.vehicle, self.phase, now - self.phase_started
        if v is None or p in (Phase.EMPTY, Phase.LEAVING):
            return round(drift, 0), False
        if p is Phase.DRIVING_ON:
            share = min(1.0, t / self.drive_on_s)
            return round(v.gross_kg * share + drift, 0), True
        if p is Phase.BACKING_OUT:
            share = max(0.0, 1 - t / self.back_out_s)
            return round(v.gross_kg * share + drift, 0), True
        if p is Phase.CROSSING:
            share = max(0.0, 1 - t / self.cross_s)
            return round(v.gross_kg * share + drift, 0), True
        # WAITING: damped oscillation, then steady (unless the fault says it never settles)
        if v.fault_weight_never_settles or t < self.settle_s:
            amp = 400 if v.fault_weight_never_settles else 400 * math.exp(-3 * t / self.settle_s)
            return round(v.gross_kg + amp * math.sin(7 * t) + drift, 0), True
        return round(v.gross_kg + drift, 0), False

    def tags_in_field(self) -> list[tuple[str, str]]:
        """(role, tag id) pairs an RFID antenna at the arming position can read now."""
        v = self.vehicle
        if v is None or self.phase not in (Phase.DRIVING_ON, Phase.WAITING):
            return []
        tags = []
        if v.epc:
            tags.append(("e_plate", v.epc))
        if v.seal_id:
            tags.append(("e_seal", v.seal_id))
        if v.driver_card:
            tags.append(("driver_card", v.driver_card))
        return tags
