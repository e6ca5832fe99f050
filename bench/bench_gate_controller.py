"""Benchmark of the lane controller: release decisions per second and latency of one evaluation.

`run()` returns rows for `python -m bench`. "Full evaluation" is `rules.evaluate` on a clean
second-line exit (pass lookup, F1-F6, M1-M5, I1-I5 including the HMAC draw); the baseline is the
same loop doing only the bare HMAC draw, so the ratio shows what the rules cost on top of it.
"Vehicle to decision" drives a `LaneController` from the arming loop through every read and
the records answer to the RELEASE decision and open pulse.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime

from gate_controller import (
    ContainerRead,
    DriverCardRead,
    EPlateRead,
    EpochKey,
    EpochKeyInstalled,
    LaneConfig,
    LaneController,
    LoopChanged,
    Observations,
    PlateRead,
    RecordsProvided,
    RecordView,
    SealRead,
    Verdict,
    WeightRead,
    draw_fraction,
)
from gate_controller.config import RulePolicy, RuleSettings
from gate_controller.rules import Facts, evaluate

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC).timestamp()
EPOCH = EpochKey(epoch_id="bench", key=b"b" * 32)
CONFIG = LaneConfig(
    lane_id="YS-E-01",
    gate_id="YS-G1",
    zone_id="yangshan-port",
    direction="E",
    rules=RulePolicy(second_line=RuleSettings(base_inspection_rate=0.0)),
)
VIEW = RecordView.model_validate(
    {
        "record_version": 1,
        "records_as_of": datetime.fromtimestamp(T0 - 5, tz=UTC),
        "offline": False,
        "passes": [
            {
                "passportNo": "Z2201E261128000000000001",
                "ioTypecd": "E",
                "passportTypecd": "3",
                "bindTypecd": "2",
                "rltTbTypecd": "1",
                "rltNo": "QD220126E000000001",
                "zoneId": "yangshan-port",
                "areainEtpsno": "3122000001",
                "vehicleNo": "沪A12345",
                "vehicleIcNo": "E2801160600002049C1A2B3C",
                "vehicleWt": 15000,
                "containerNo": "TGHU1234567,MSCU7654321",
                "containerWt": 4000,
                "totalWt": 39000,
                "stucd": "1",
                "sealNo": "SEAL0001",
            }
        ],
        "vehicles": [
            {"vehicleNo": "沪A12345", "vehicleIcNo": "E2801160600002049C1A2B3C", "tareHistory": [15000] * 5}
        ],
        "driver_cards": [{"cardId": "DC0001"}],
        "enterprises": [{"etpsNo": "3122000001", "creditGrade": "general_credit"}],
        "declarations": [{"entryId": "220120261000000001", "released": True}],
        "entry_lists": [{"bondInvtNo": "QD220126E000000001", "entryNo": "220120261000000001"}],
        "risk_instructions": [
            {
                "instructionId": f"RK{i}",
                "target": "vehicle",
                "targetValue": f"沪B{i:05d}",
                "action": "inspect",
            }
            for i in range(50)
        ],
    }
)
READS = [
    PlateRead(plate="沪A12345", confidence=0.95),
    EPlateRead(epc="E2801160600002049C1A2B3C"),
    DriverCardRead(card_id="DC0001"),
    WeightRead(kg=39100, stable=True),
    ContainerRead(position="front", number="TGHU1234567", confidence=0.9),
    ContainerRead(position="back", number="MSCU7654321", confidence=0.9),
    SealRead(seal_id="SEAL0001", state="intact"),
]


def _observations() -> Observations:
    obs = Observations()
    for read in READS:
        obs = obs.with_read(read)
    return obs


def _facts(i: int, obs: Observations) -> Facts:
    return Facts(config=CONFIG, obs=obs, view=VIEW, now=T0, transaction_id=f"YS-E-01-{i:08d}", epoch=EPOCH)


def _timed(fn: Callable[[int], object], n: int) -> list[float]:
    """Per-call latencies in seconds."""
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def _best_rate(fn: Callable[[int], object], repeats: int = 5, n: int = 1000) -> float:
    """Calls per second, best of `repeats` runs (timeit convention: the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return n / best


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _vehicle_to_decision(i: int) -> None:
    lane = LaneController(CONFIG)
    now = T0 + i
    lane.handle(EpochKeyInstalled(epoch=EPOCH), now)
    step = lane.handle(LoopChanged(loop="arming", occupied=True), now)
    request_id = None
    for read in READS:
        step = lane.handle(read, now)
        request_id = next((c.request_id for c in step.commands if c.kind == "request_records"), request_id)
    step = lane.handle(RecordsProvided(request_id=request_id, view=VIEW), now)
    assert any(c.kind == "barrier_pulse" for c in step.commands)


def run() -> list[dict]:
    """Decisions per second, p50/p99 of one evaluation, and a whole vehicle up to the open pulse."""
    obs = _observations()
    assert evaluate(_facts(0, obs)).verdict is Verdict.RELEASE
    n = 3000
    _timed(lambda i: evaluate(_facts(i, obs)), 200)  # warm-up
    latencies = _timed(lambda i: evaluate(_facts(i, obs)), n)
    per_second = _best_rate(lambda i: evaluate(_facts(i, obs)))
    hmac_per_second = _best_rate(
        lambda i: draw_fraction(EPOCH.key, "Z2201E261128000000000001", f"YS-E-01-{i:08d}", "2026.1")
    )
    vehicle = _timed(_vehicle_to_decision, 500)
    notes = "clean second-line exit, 50 risk instructions in the view, one core, Python 3.11"
    return [
        {
            "benchmark": "gate_controller: full evaluations per second",
            "value": round(per_second),
            "unit": "decisions/s",
            "baseline": round(hmac_per_second),
            "ratio": round(per_second / hmac_per_second, 4),
            "notes": f"best of 5 × 1000; baseline: same loop doing only the bare HMAC draw; {notes}",
        },
        {
            "benchmark": "gate_controller: one full evaluation p50",
            "value": round(_percentile(latencies, 0.50) * 1e6, 1),
            "unit": "µs",
            "baseline": None,
            "ratio": None,
            "notes": notes,
        },
        {
            "benchmark": "gate_controller: one full evaluation p99",
            "value": round(_percentile(latencies, 0.99) * 1e6, 1),
            "unit": "µs",
            "baseline": None,
            "ratio": None,
            "notes": notes,
        },
        {
            "benchmark": "gate_controller: vehicle arming to open pulse p50",
            "value": round(_percentile(vehicle, 0.50) * 1e3, 3),
            "unit": "ms",
            "baseline": None,
            "ratio": None,
            "notes": "LaneController: arming loop, 7 reads, records answer, RELEASE decision and open pulse",
        },
        {
            "benchmark": "gate_controller: vehicle arming to open pulse p99",
            "value": round(_percentile(vehicle, 0.99) * 1e3, 3),
            "unit": "ms",
            "baseline": None,
            "ratio": None,
            "notes": "LaneController: arming loop, 7 reads, records answer, RELEASE decision and open pulse",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
