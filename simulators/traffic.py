"""Synthetic but coherent customs traffic: a fleet, its enterprises, and one gate pass per trip.

The hub is seeded with the records (customs field names, so they go through the real importer and the
real replication to the edges), and each lane's scene is fed the vehicles that those records describe.
Most trips are clean; a configurable share carry the anomalies a real gate sees — a misread plate,
overweight cargo, no pass at all, a blacklisted tractor — so every verdict appears on the wall screen.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_agent.vision.iso6346 import check_digit
from firmware_configs.devices import ContainerCameraConfig
from firmware_configs.schema import Lane, Zone
from simulators.scene import VehicleSpec

PROVINCES = "沪沪沪沪苏浙皖鲁闽"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # GA 36-2018: no I or O
OWNER_CODES = ("TGHU", "MSCU", "CSNU", "OOLU", "CMAU", "EGHU", "TCNU", "MAEU")
# (credit grade, share of trips): most traffic comes from certified enterprises, very little from dishonest ones
ENTERPRISE_MIX = (
    ("advanced_certified", 25),
    ("advanced_certified", 15),
    ("general_certified", 20),
    ("general_certified", 12),
    ("general_credit", 12),
    ("general_credit", 8),
    ("general_credit", 6),
    ("dishonest", 2),
)
CUSTOMS_CODE = {
    "waigaoqiao-ftz": "2218",
    "waigaoqiao-park": "2225",
    "yangshan-port": "2248",
    "pudong-airport": "2244",
}


@dataclass
class Anomalies:
    """Share of trips with each problem (the rest are clean)."""

    misread_plate: float = 0.05
    overweight: float = 0.04
    no_pass: float = 0.02
    blacklisted: float = 0.01
    never_settles: float = 0.0


@dataclass
class Trip:
    vehicle: VehicleSpec
    records: list[tuple[str, str, dict[str, Any]]]  # (kind, key, record)
    anomaly: str | None
    superseded_pass: str | None = None  # the truck's previous pass: void it at the hub if it was never used


@dataclass
class TrafficGenerator:
    """Deterministic (seeded) trips for one zone's lanes."""

    zone: Zone
    seed: int = 1
    anomalies: Anomalies = field(default_factory=Anomalies)
    fleet_size: int = 60

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.zone.id}/{self.seed}")
        self.code = CUSTOMS_CODE.get(self.zone.id, "2200")
        self._serial = 0
        self.enterprises = [
            {
                "etpsNo": f"{self.code}{self.rng.randrange(10**5, 10**6)}{i:02d}",
                "etpsNm": f"{self.zone.name_zh}物流企业{i + 1}号",
                "creditGrade": grade,
            }
            for i, (grade, _share) in enumerate(ENTERPRISE_MIX)
        ]
        self.enterprise_weights = [share for _grade, share in ENTERPRISE_MIX]
        self.fleet = [self._vehicle(i) for i in range(self.fleet_size)]
        self._rotation: list[dict[str, Any]] = []
        self.open_passes: dict[str, str] = {}  # plate → its latest pass number (to void if never used)

    # ------------------------------------------------------------------ fleet
    def _plate(self) -> str:
        r = self.rng
        tail = "".join(r.choice("0123456789" + LETTERS[:10]) for _ in range(4)) + r.choice("0123456789")
        return f"{r.choice(PROVINCES)}{r.choice('ABCDEF')}{tail}"

    def _vehicle(self, i: int) -> dict[str, Any]:
        tare = self.rng.randrange(14_000, 17_000, 10)
        return {
            "vehicleNo": self._plate(),
            "plateColour": "yellow",
            "vehicleIcNo": f"E2{self.rng.getrandbits(88):022X}",
            "vehicleWt": tare,
            "tareHistory": [tare + self.rng.randrange(-150, 150, 10) for _ in range(3)],
            "owner": self.enterprises[i % len(self.enterprises)]["etpsNm"],
            "status": "active",
            "cardId": f"{self.rng.getrandbits(40):010X}",
        }

    def _next_vehicle(self) -> dict[str, Any]:
        """Each truck of the fleet once per round, in a fresh order: a truck is never in two lanes at once."""
        if not self._rotation:
            self._rotation = self.rng.sample(self.fleet, len(self.fleet))
        return self._rotation.pop()

    def _container(self) -> str:
        first = self.rng.choice(OWNER_CODES) + f"{self.rng.randrange(10**6):06d}"
        return first + str(check_digit(first))

    def base_records(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Enterprises, vehicles and driver cards: the standing registry of the zone."""
        out: list[tuple[str, str, dict[str, Any]]] = [
            ("enterprise", e["etpsNo"], e) for e in self.enterprises
        ]
        for v in self.fleet:
            reg = {
                k: v[k]
                for k in (
                    "vehicleNo",
                    "plateColour",
                    "vehicleIcNo",
                    "vehicleWt",
                    "tareHistory",
                    "owner",
                    "status",
                )
            }
            out.append(("vehicle", v["vehicleNo"], reg))
            out.append(
                (
                    "driver_card",
                    v["cardId"],
                    {"cardId": v["cardId"], "holder": f"司机{v['cardId'][-4:]}", "active": True},
                )
            )
        return out

    # ------------------------------------------------------------------ trips
    def _pass_no(self, direction: str, today: datetime) -> str:
        self._serial += 1
        return f"Z{self.code}{direction}{today:%y%m%d}{self.rng.randrange(10**5):05d}{self._serial:07d}"

    def _roll_anomaly(self) -> str | None:
        roll, threshold = self.rng.random(), 0.0
        for name, share in vars(self.anomalies).items():
            threshold += share
            if roll < threshold:
                return name
        return None

    def trip(self, lane: Lane, now: datetime | None = None) -> Trip:
        """One vehicle for `lane`, with the records that make it (normally) releasable."""
        now = now or datetime.now(UTC)
        r = self.rng
        anomaly = self._roll_anomaly()
        records: list[tuple[str, str, dict[str, Any]]] = []
        v = self._next_vehicle()
        if anomaly == "blacklisted":  # a stranger on the blacklist, not a fleet truck: the fleet stays usable
            v = self._vehicle(r.randrange(len(self.enterprises)))
            records.append(
                (
                    "vehicle",
                    v["vehicleNo"],
                    {
                        **{k: v[k] for k in ("vehicleNo", "vehicleIcNo", "vehicleWt", "owner")},
                        "status": "blacklisted",
                    },
                )
            )
            records.append(("driver_card", v["cardId"], {"cardId": v["cardId"], "active": True}))
        has_boxes = bool(lane.of_type(ContainerCameraConfig))
        empty = not has_boxes
        boxes = (
            [self._container(), self._container() if r.random() < 0.4 else None]
            if has_boxes
            else [None, None]
        )
        cargo = 0 if empty else r.randrange(6_000, 24_000, 10)
        box_tare = 3_800 * sum(1 for b in boxes if b)
        total = v["vehicleWt"] + box_tare + cargo
        ent = r.choices(self.enterprises, weights=self.enterprise_weights)[0]
        pass_no = self._pass_no(lane.direction, now)
        bill = f"{r.choice(('COSU', 'MEDU', 'OOLU'))}{r.randrange(10**9):09d}"
        if empty:
            pass_type, rlt_type, rlt_no = "6", None, ""
        elif lane.line == "first" and lane.direction == "I":
            pass_type, rlt_type, rlt_no = "1", "3", bill
            doc = {
                "billNo": bill,
                "containerNo": ",".join(b for b in boxes if b),
                "packNo": cargo // 25,
                "grossWt": cargo,
            }
            records += [("manifest", bill, doc), ("delivery_order", bill, doc | {"released": True})]
        elif lane.line == "first":
            pass_type, rlt_type, rlt_no = "2", None, ""
        else:
            list_no = f"QD{self.code}{lane.direction}{r.randrange(10**11):011d}"[:18]
            entry = f"{self.code}{now:%Y}{r.randrange(10**10):010d}"
            pass_type, rlt_type, rlt_no = "3", "1", list_no
            records += [
                (
                    "ledger_list",
                    list_no,
                    {
                        "bondInvtNo": list_no,
                        "putrecNo": f"T{self.code}W{r.randrange(10**6):06d}",
                        "entryNo": entry,
                        "gateStatus": "0",
                        "vrfdedMarkcd": "0",
                    },
                ),
                (
                    "declaration",
                    entry,
                    {
                        "entryId": entry,
                        "billNo": bill,
                        "containerNo": ",".join(b for b in boxes if b),
                        "packNo": cargo // 25,
                        "grossWt": cargo,
                        "released": True,
                        "taxPaid": True,
                        "licenceOk": True,
                    },
                ),
            ]
        gate_pass = {
            "passportNo": pass_no,
            "ioTypecd": lane.direction,
            "passportTypecd": pass_type,
            "bindTypecd": "2" if rlt_no else None,
            "rltTbTypecd": rlt_type,
            "rltNo": rlt_no,
            "zoneId": self.zone.id,
            "areainEtpsno": ent["etpsNo"],
            "vehicleNo": v["vehicleNo"],
            "vehicleIcNo": v["vehicleIcNo"],
            "vehicleWt": v["vehicleWt"],
            "vehicleFrameWt": 0,
            "containerNo": ",".join(b for b in boxes if b),
            "containerWt": box_tare,
            "totalGrossWt": cargo,
            "totalNetWt": int(cargo * 0.92),
            "totalWt": total,
            "stucd": "1",
            "sealNo": f"5E{r.getrandbits(40):010X}" if has_boxes else "",
            "validUntil": (now + timedelta(days=3)).isoformat(),
        }
        gross = total + r.randrange(-120, 120, 10)
        plate_shown = None
        if anomaly == "misread_plate":
            plate_shown = v["vehicleNo"][:-1] + ("8" if v["vehicleNo"][-1] != "8" else "3")
        elif anomaly == "overweight":
            gross = total + max(1_500, int(total * 0.08))
        superseded = self.open_passes.pop(v["vehicleNo"], None)
        if anomaly != "no_pass":
            records.append(("gate_pass", pass_no, gate_pass))
            self.open_passes[v["vehicleNo"]] = pass_no
        vehicle = VehicleSpec(
            plate=v["vehicleNo"],
            epc=v["vehicleIcNo"],
            driver_card=v["cardId"],
            containers=(boxes[0], boxes[1]),
            seal_id=gate_pass["sealNo"] or None,
            gross_kg=float(gross),
            plate_shown=plate_shown,
            fault_weight_never_settles=anomaly == "never_settles",
        )
        return Trip(vehicle=vehicle, records=records, anomaly=anomaly, superseded_pass=superseded)
