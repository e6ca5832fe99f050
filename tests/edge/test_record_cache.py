"""The edge record cache: in-order idempotent deltas, gap detection, snapshot, lookups by what a lane reads."""

import pytest

from edge_agent.record_cache import GapDetected, RecordCache
from efence.contract import RecordDelta, RecordPage

ZONE = "waigaoqiao-ftz"
PASS = {
    "passportNo": "Z2218I261128000000000001",
    "vehicleNo": "沪A12345",
    "vehicleIcNo": "E200AB",
    "containerNo": "TGHU1234567,MSCU7654321",
    "rltNo": "QD2218I00000000001",
    "areainEtpsno": "221800001",
    "stucd": "1",
}


def delta(seq: int, kind: str, key: str, record: dict, op: str = "upsert") -> RecordDelta:
    return RecordDelta(zone=ZONE, seq=seq, kind=kind, key=key, op=op, record=record)


@pytest.fixture
def cache(tmp_path):
    c = RecordCache(tmp_path / "records.sqlite", ZONE)
    yield c
    c.close()


async def test_deltas_apply_in_order_and_redelivery_is_harmless(cache):
    assert await cache.apply([delta(1, "gate_pass", PASS["passportNo"], PASS)]) == 1
    assert (
        await cache.apply([delta(1, "gate_pass", PASS["passportNo"], {**PASS, "stucd": "6"})]) == 1
    )  # old seq: skipped
    related = await cache.related(plate="沪A12345", epc=None)
    assert [p["stucd"] for p in related["passes"]] == ["1"]


async def test_a_gap_applies_nothing_and_is_reported(cache):
    await cache.apply([delta(1, "vehicle", "沪A12345", {"vehicleNo": "沪A12345"})])
    with pytest.raises(GapDetected) as exc:
        await cache.apply([delta(3, "vehicle", "沪B1", {"vehicleNo": "沪B1"})])
    assert (exc.value.have, exc.value.got) == (1, 3)
    assert (await cache.state()).record_version == 1


async def test_lookup_by_plate_epc_container_and_related_documents(cache):
    await cache.apply(
        [
            delta(1, "gate_pass", PASS["passportNo"], PASS),
            delta(2, "vehicle", "沪A12345", {"vehicleNo": "沪A12345", "vehicleIcNo": "E200AB"}),
            delta(3, "enterprise", "221800001", {"etpsNo": "221800001", "creditGrade": "general_credit"}),
            delta(
                4,
                "ledger_list",
                "QD2218I00000000001",
                {"bondInvtNo": "QD2218I00000000001", "entryNo": "2218E1"},
            ),
            delta(5, "declaration", "2218E1", {"entryId": "2218E1", "released": True}),
            delta(
                6,
                "risk_instruction",
                "R1",
                {"instructionId": "R1", "target": "vehicle", "targetValue": "沪Z0"},
            ),
            delta(7, "vehicle", "沪Z0", {"vehicleNo": "沪Z0"}),
        ]
    )
    by_epc = await cache.related(plate=None, epc="E200AB")
    assert [p["passportNo"] for p in by_epc["passes"]] == [PASS["passportNo"]]
    assert [v["vehicleNo"] for v in by_epc["vehicles"]] == ["沪A12345"]
    assert [e["etpsNo"] for e in by_epc["enterprises"]] == ["221800001"]
    assert [d["entryId"] for d in by_epc["declarations"]] == ["2218E1"]
    assert len(by_epc["risk_instructions"]) == 1
    by_box = await cache.related(plate=None, epc=None, containers=["MSCU7654321"])
    assert len(by_box["passes"]) == 1
    assert (await cache.related(plate="沪C99999", epc=None))["passes"] == []


async def test_delete_and_snapshot_replace_everything(cache):
    await cache.apply(
        [delta(1, "vehicle", "沪A1", {"vehicleNo": "沪A1"}), delta(2, "vehicle", "沪A1", {}, op="delete")]
    )
    assert (await cache.related(plate="沪A1", epc=None))["vehicles"] == []
    page = RecordPage(
        zone=ZONE, head_seq=40, snapshot=True, deltas=[delta(39, "vehicle", "沪B2", {"vehicleNo": "沪B2"})]
    )
    assert await cache.apply_page(page) == 40
    state = await cache.state()
    assert state.record_version == 40 and state.count == 1 and state.records_as_of is not None


async def test_a_delta_for_another_zone_is_refused(cache):
    with pytest.raises(ValueError, match="zone"):
        await cache.apply([RecordDelta(zone="pudong-airport", seq=1, kind="vehicle", key="x", record={})])
