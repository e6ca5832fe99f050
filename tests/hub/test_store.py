"""The hub store on a real SQLite file: idempotency, seq tracking, records, crossings, alarms, audit."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from central_monitor.alarms import AlarmSpec
from central_monitor.evidence import EvidenceFiles
from central_monitor.records import ImportRejected
from central_monitor.retention import RetentionConfig, prune
from central_monitor.store import SqliteStore
from central_monitor.timeutil import iso
from efence.contract import AgentStatus, DeviceStatus, EventEnvelope, LaneStatus, RecordKind, utcnow

from .hubkit import agent_status, event, tx_event

PASS_NO = "Z2248I261128000000000001"
LIST_NO = "QD2248I00000000001"


def gate_pass(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "passportNo": PASS_NO,
        "ioTypecd": "I",
        "passportTypecd": "3",
        "bindTypecd": "2",
        "rltTbTypecd": "1",
        "rltNo": LIST_NO,
        "vehicleNo": "沪A12345",
        "vehicleWt": "15000",
        "containerNo": "TGHU1234567",
        "containerWt": "3800",
        "totalWt": "30000",
        "stucd": "1",
    }
    row.update(over)
    return row


# ------------------------------------------------------------------ ingest
def test_same_event_twice_is_stored_once(store: SqliteStore, zone: str) -> None:
    env = tx_event(f"{zone}/cp1", 1, "t1")
    first = store.ingest([env])
    again = store.ingest([env, env])
    assert (first.inserted, first.duplicates) == (1, 0)
    assert (again.inserted, again.duplicates) == (0, 2)
    assert store.health()["counts"]["events"] == 1
    assert len(store.list_transactions()) == 1
    assert again.contiguous == {f"{zone}/cp1": 1}  # a duplicate-only batch is still acknowledged


def test_contiguous_seq_and_gaps(store: SqliteStore, zone: str) -> None:
    agent = f"{zone}/cp1"
    res = store.ingest([event(agent, s) for s in (1, 2, 4, 5, 8)])
    assert res.contiguous[agent] == 2
    assert res.max_seq[agent] == 8
    assert res.gaps[agent] == [(3, 3), (6, 7)]
    res = store.ingest([event(agent, 3)])
    assert res.contiguous[agent] == 5
    assert res.gaps[agent] == [(6, 7)]


def test_agent_that_starts_numbering_again_gets_a_new_incarnation(store: SqliteStore, zone: str) -> None:
    """A replaced edge box restarts at seq 1: store its events and ack from 1 again, never drop them."""
    agent = f"{zone}/cp1"
    old = [event(agent, s, note="old box") for s in (1, 2, 3)]
    assert store.ingest(old).contiguous[agent] == 3
    res = store.ingest([event(agent, 1, note="new box"), event(agent, 2, note="new box")])
    assert (res.conflicts, res.inserted) == (1, 2)
    assert res.contiguous[agent] == 2  # acks now count the new numbering
    assert store.ingest(old[2:]).duplicates == 1  # a late resend of the old box is still harmless
    assert store.health()["counts"]["events"] == 5
    assert [a["kind"] for a in store.list_alarms()] == ["agent_seq_reset"]
    assert store.ingest([event(agent, 3, note="new box")]).contiguous[agent] == 3


def test_abandoned_gap_lets_acks_move_on_and_rings(store: SqliteStore, zone: str) -> None:
    agent = f"{zone}/cp1"
    store.ingest([event(agent, 1), event(agent, 4)])
    res = store.abandon_gap(agent, 2, 3)
    assert res.contiguous[agent] == 4
    assert [a["kind"] for a in store.list_alarms(ringing=True)] == ["event_gap"]


def test_older_decision_arriving_late_does_not_overwrite_newer(store: SqliteStore, zone: str) -> None:
    agent = f"{zone}/cp1"
    now = utcnow()
    newer = EventEnvelope.new(
        agent_id=agent, seq=2, type="transaction", lane="L1", observed_at=now,
        payload={"transaction_id": "t1", "verdict": "RELEASE", "manual": True},
    )  # fmt: skip
    older = EventEnvelope.new(
        agent_id=agent, seq=1, type="transaction", lane="L1", observed_at=now - timedelta(seconds=5),
        payload={"transaction_id": "t1", "verdict": "HOLD_MANUAL", "reasons": ["M3"]},
    )  # fmt: skip
    store.ingest([newer])
    store.ingest([older])
    (tx,) = store.list_transactions()
    assert tx["verdict"] == "RELEASE" and tx["manual"] is True


# ------------------------------------------------------------------ records
def test_import_errors_name_row_field_expected_and_import_nothing(store: SqliteStore, zone: str) -> None:
    rows = [
        gate_pass(),
        gate_pass(passportNo="SHORT", ioTypecd="X"),
        gate_pass(passportNo="Z2248I261128000000000003", totalWt="heavy"),
    ]
    with pytest.raises(ImportRejected) as err:
        store.import_records(zone, RecordKind.GATE_PASS, rows, "tester")
    found = {(e.row, e.field) for e in err.value.errors}
    assert found == {(2, "passportNo"), (2, "ioTypecd"), (3, "totalWt")}
    by_field = {e.field: e for e in err.value.errors}
    assert "24" in by_field["passportNo"].expected and by_field["passportNo"].got == "SHORT"
    assert by_field["ioTypecd"].expected == "one of I/E"
    assert "number" in by_field["totalWt"].expected
    page = store.records_page(zone, 0)
    assert page.head_seq == 0 and page.deltas == []  # the valid first row was not imported either


def test_duplicate_key_in_one_file_is_an_error(store: SqliteStore, zone: str) -> None:
    with pytest.raises(ImportRejected) as err:
        store.import_records(zone, RecordKind.GATE_PASS, [gate_pass(), gate_pass()], "tester")
    assert err.value.errors[0].row == 2


def test_records_page_deltas_and_snapshots(store: SqliteStore, zone: str) -> None:
    store.import_records(
        zone, RecordKind.VEHICLE, [{"vehicleNo": "沪A00001"}, {"vehicleNo": "沪A00002"}], "t"
    )
    store.import_records(zone, RecordKind.VEHICLE, [{"vehicleNo": "沪A00001", "status": "blacklisted"}], "t")
    page = store.records_page(zone, after=1)
    assert (page.snapshot, page.head_seq, [d.seq for d in page.deltas]) == (False, 3, [2, 3])
    assert page.deltas[-1].record["status"] == "blacklisted"
    snap = store.records_page(zone, after=0)
    assert snap.snapshot and {d.key for d in snap.deltas} == {"沪A00001", "沪A00002"}
    assert max(d.seq for d in snap.deltas) == 3
    ahead = store.records_page(zone, after=99)  # an edge ahead of the hub (hub store replaced): start over
    assert ahead.snapshot
    assert store.records_page(zone, after=3).deltas == []
    assert store.records_page("other-zone", after=0).head_seq == 0


def test_crossing_marks_pass_list_and_deduction(store: SqliteStore, zone: str) -> None:
    store.import_many(
        zone,
        [
            (RecordKind.GATE_PASS, [gate_pass()]),
            (RecordKind.LEDGER_LIST, [{"bondInvtNo": LIST_NO, "entryNo": "224820260000000001"}]),
            (RecordKind.DECLARATION, [{"entryId": "224820260000000001", "released": "true"}]),
        ],
        "tester",
    )
    agent = f"{zone}/cp1"
    store.ingest([tx_event(agent, 1, "t1", pass_no=PASS_NO, plate="沪A12345", gross_kg=30450)])
    res = store.ingest(
        [event(agent, 2, "transaction_closed", transaction_id="t1", outcome="crossed", verdict="RELEASE")]
    )
    gp = store.get_record(zone, RecordKind.GATE_PASS, PASS_NO)
    assert gp is not None
    assert gp["stucd"] == "2" and gp["passCollectWt"] == 30450 and gp["wtError"] == 450
    lst = store.get_record(zone, RecordKind.LEDGER_LIST, LIST_NO)
    assert lst is not None and lst["gateStatus"] == "1" and lst["vrfdedMarkcd"] == "2"
    assert [d.kind for d in res.deltas] == [RecordKind.GATE_PASS, RecordKind.LEDGER_LIST]
    assert [d.seq for d in res.deltas] == [4, 5]
    (tx,) = store.list_transactions()
    assert tx["wt_error"] == 450 and tx["outcome"] == "crossed"


def test_list_not_crossed_until_all_its_passes_crossed(store: SqliteStore, zone: str) -> None:
    second = "Z2248I261128000000000002"
    store.import_many(
        zone,
        [
            (RecordKind.GATE_PASS, [gate_pass(), gate_pass(passportNo=second)]),
            (RecordKind.LEDGER_LIST, [{"bondInvtNo": LIST_NO}]),
        ],
        "tester",
    )
    agent = f"{zone}/cp1"
    store.ingest([tx_event(agent, 1, "t1", pass_no=PASS_NO)])
    store.ingest([event(agent, 2, "transaction_closed", transaction_id="t1", outcome="crossed")])
    assert store.get_record(zone, RecordKind.LEDGER_LIST, LIST_NO)["gateStatus"] == "0"  # type: ignore[index]
    store.ingest([tx_event(agent, 3, "t2", pass_no=second)])
    store.ingest([event(agent, 4, "transaction_closed", transaction_id="t2", outcome="crossed")])
    assert store.get_record(zone, RecordKind.LEDGER_LIST, LIST_NO)["gateStatus"] == "1"  # type: ignore[index]


def test_refused_vehicle_backing_out_does_not_cross_the_pass(store: SqliteStore, zone: str) -> None:
    store.import_records(zone, RecordKind.GATE_PASS, [gate_pass()], "tester")
    agent = f"{zone}/cp1"
    store.ingest([tx_event(agent, 1, "t1", verdict="REFUSE", reasons=["F2"], pass_no=PASS_NO)])
    store.ingest([event(agent, 2, "transaction_closed", transaction_id="t1", outcome="backed_out")])
    assert store.get_record(zone, RecordKind.GATE_PASS, PASS_NO)["stucd"] == "1"  # type: ignore[index]


def test_transfer_between_zones_overdue_then_arrival(store: SqliteStore, zone: str) -> None:
    dest = zone + "-b"
    store.import_records(
        zone, RecordKind.GATE_PASS, [gate_pass(ioTypecd="E", destZoneId=dest, transferLimitMin="30")], "t"
    )
    assert store.get_record(dest, RecordKind.GATE_PASS, PASS_NO) is not None  # known at the destination too
    store.ingest([tx_event(f"{zone}/out", 1, "t1", pass_no=PASS_NO)])
    store.ingest([event(f"{zone}/out", 2, "transaction_closed", transaction_id="t1", outcome="crossed")])
    assert store.get_record(zone, RecordKind.GATE_PASS, PASS_NO)["stucd"] == "3"  # type: ignore[index]
    assert store.check_transfers(utcnow() + timedelta(minutes=10)) == []
    (late,) = store.check_transfers(utcnow() + timedelta(minutes=31))
    assert late["kind"] == "transfer_overdue" and late["zone"] == dest
    store.ingest([tx_event(f"{dest}/in", 1, "t2", pass_no=PASS_NO)])
    store.ingest([event(f"{dest}/in", 2, "transaction_closed", transaction_id="t2", outcome="crossed")])
    assert store.get_record(dest, RecordKind.GATE_PASS, PASS_NO)["stucd"] == "4"  # type: ignore[index]
    (transfer,) = store.list_transfers()
    assert transfer["state"] == "arrived"
    assert store.list_alarms()[0]["cleared_at"] is not None


# ------------------------------------------------------------------ alarms
def test_alarm_dedupe_ack_and_rearm_cooldown(tmp_path) -> None:  # noqa: ANN001
    store = SqliteStore(tmp_path / "a.db", alarm_cooldown_s=60)
    spec = AlarmSpec(kind="perimeter_intrusion", subject="z/F-07", message="fibre", zone="z")
    t0 = utcnow()
    first = store.raise_alarm(spec, t0)
    assert first is not None and first["ringing"] and first["severity"] == "critical"
    assert store.raise_alarm(spec, t0 + timedelta(seconds=5)) is None  # still ringing: counted, not repeated
    acked = store.ack_alarm(first["id"], "officer1", "patrol sent", t0 + timedelta(seconds=10))
    assert acked is not None
    assert (acked["ringing"], acked["acked_by"], acked["ack_note"]) == (False, "officer1", "patrol sent")
    assert store.raise_alarm(spec, t0 + timedelta(seconds=30)) is None  # inside the re-arm cooldown
    again = store.raise_alarm(spec, t0 + timedelta(seconds=80))
    assert again is not None and again["id"] != first["id"] and again["ringing"]
    counted = [a for a in store.list_alarms() if a["id"] == first["id"]][0]
    assert counted["count"] == 3
    assert store.ack_alarm(999, "x", "") is None
    store.close()


def test_alarms_from_records_blacklist_empty_cargo_repeated_failures(store: SqliteStore, zone: str) -> None:
    store.import_records(zone, RecordKind.VEHICLE, [{"vehicleNo": "沪B66666", "status": "blacklisted"}], "t")
    store.import_records(
        zone, RecordKind.GATE_PASS,
        [gate_pass(passportTypecd="6", vehicleWt="15000", containerWt="0", totalWt="15000")], "t",
    )  # fmt: skip
    agent = f"{zone}/cp1"
    store.ingest([tx_event(agent, 1, "t1", verdict="REFUSE", reasons=["F3"], plate="沪B66666")])
    store.ingest(
        [tx_event(agent, 2, "t2", verdict="HOLD_INSPECTION", reasons=["I3"], pass_no=PASS_NO, gross_kg=19000)]
    )
    store.ingest(
        [tx_event(agent, 3, "t3", verdict="HOLD_MANUAL", reasons=["M1"], pass_no=PASS_NO, gross_kg=15100)]
    )
    kinds = [a["kind"] for a in store.list_alarms()]
    assert "blacklisted_vehicle" in kinds
    assert kinds.count("empty_vehicle_with_cargo") == 1  # 4 t over tare rang; 100 kg did not
    assert "repeated_failures" not in kinds  # two failures so far
    store.ingest([tx_event(agent, 4, "t4", verdict="REFUSE", reasons=["F1"], pass_no=PASS_NO)])
    assert "repeated_failures" in [a["kind"] for a in store.list_alarms()]


def test_device_alarms_suppressed_while_agent_offline(store: SqliteStore, zone: str) -> None:
    store.apply_status(agent_status(zone, down=("rfid-1",)))
    assert [a["kind"] for a in store.list_alarms(ringing=True)] == ["device_offline"]
    store.apply_status(agent_status(zone, online=False))
    assert sorted(a["kind"] for a in store.list_alarms(ringing=True)) == ["agent_offline", "device_offline"]
    store.ingest([event(f"{zone}/cp1", 1, "device_health", device_id="camera-1", observed="down")])
    assert [a["kind"] for a in store.list_alarms(ringing=True)].count("device_offline") == 1  # suppressed
    devices = {d["device_id"]: d for d in store.list_devices()}
    assert devices["rfid-1"]["effective"] == "unknown"  # the hub cannot know while the agent is away
    store.apply_status(agent_status(zone))
    offline = [a for a in store.list_alarms() if a["kind"] == "agent_offline"][0]
    assert offline["cleared_at"] is not None and offline["ringing"]  # cleared, still rings until acked
    (agent,) = store.list_agents()
    assert agent["online"] is True


def test_a_device_outage_counts_once_however_often_it_is_reported(store: SqliteStore, zone: str) -> None:
    """Every status heartbeat and the edge's own event repeat "down" while one outage lasts: one
    occurrence. Only after the device was back (alarm cleared) does the next outage count again, and an
    officer's acknowledgement during an outage does not make the next heartbeat ring anew."""
    t0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    for i in range(4):  # status every 30 s, device down all along
        store.apply_status(agent_status(zone, down=("rfid-1",)), now=t0 + timedelta(seconds=30 * i))
    store.ingest([event(f"{zone}/cp1", 1, "device_health", device_id="rfid-1", observed="down")])
    (alarm,) = [a for a in store.list_alarms() if a["kind"] == "device_offline"]
    assert alarm["count"] == 1
    store.ack_alarm(alarm["id"], "officer", "field engineer called", now=t0 + timedelta(minutes=2))
    store.apply_status(agent_status(zone, down=("rfid-1",)), now=t0 + timedelta(hours=1))  # past cooldown
    alarms = [a for a in store.list_alarms() if a["kind"] == "device_offline"]
    assert len(alarms) == 1 and alarms[0]["count"] == 1 and not alarms[0]["ringing"]
    store.apply_status(agent_status(zone), now=t0 + timedelta(hours=2))  # back up: cleared
    store.apply_status(agent_status(zone, down=("rfid-1",)), now=t0 + timedelta(hours=3))  # a new outage
    store.apply_status(agent_status(zone, down=("rfid-1",)), now=t0 + timedelta(hours=3, seconds=30))
    alarms = [a for a in store.list_alarms() if a["kind"] == "device_offline"]
    assert len(alarms) == 2 and alarms[0]["ringing"] and alarms[0]["count"] == 1  # newest first


def test_outbox_alarm_is_one_per_agent_and_recovery_clears_it(store: SqliteStore, zone: str) -> None:
    agent = f"{zone}/cp1"
    filling = {"alarm": "outbox_filling", "severity": "critical", "detail": "outbox 80% full"}
    store.ingest(
        [event(agent, 1, "alarm", lane=None, **filling), event(agent, 2, "alarm", lane=None, **filling)]
    )
    (alarm,) = store.list_alarms()
    assert (alarm["kind"], alarm["subject"], alarm["cleared_at"]) == ("outbox_filling", agent, None)
    store.ingest([event(agent, 3, "alarm", lane=None, alarm="outbox_recovered", severity="info")])
    (alarm,) = store.list_alarms()  # no alarm of its own: it ends the first one's condition
    assert alarm["kind"] == "outbox_filling" and alarm["cleared_at"] is not None and alarm["ringing"]


def test_same_device_id_on_two_lanes_is_two_devices(store: SqliteStore, zone: str) -> None:
    """Every lane has its own `io` board: one lane's board down must show and ring on that lane, and the
    other lane's healthy `io` must neither hide it nor clear its alarm."""

    def status(in_io: str, out_io: str) -> AgentStatus:
        return AgentStatus(
            agent_id=f"{zone}/cp1",
            zone=zone,
            checkpoint="cp1",
            online=True,
            lanes=[
                LaneStatus(
                    lane="in-1", devices=[DeviceStatus(device_id="io", type="io_board", observed=in_io)]
                ),
                LaneStatus(
                    lane="out-1", devices=[DeviceStatus(device_id="io", type="io_board", observed=out_io)]
                ),
            ],
        )

    store.apply_status(status("down", "up"))
    devices = {(d["lane"], d["device_id"]): d["observed"] for d in store.list_devices()}
    assert devices == {("in-1", "io"): "down", ("out-1", "io"): "up"}
    (alarm,) = [a for a in store.list_alarms() if a["kind"] == "device_offline"]
    assert alarm["lane"] == "in-1" and alarm["cleared_at"] is None
    store.ingest([event(f"{zone}/cp1", 1, "device_health", device_id="io", observed="up", lane="out-1")])
    (alarm,) = [a for a in store.list_alarms() if a["kind"] == "device_offline"]
    assert alarm["cleared_at"] is None  # out-1's io being up says nothing about in-1's
    store.apply_status(status("up", "down"))
    alarms = {a["lane"]: a for a in store.list_alarms() if a["kind"] == "device_offline"}
    assert alarms["in-1"]["cleared_at"] is not None and alarms["out-1"]["cleared_at"] is None


def test_an_old_store_with_devices_keyed_without_lane_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE devices (agent_id TEXT NOT NULL, device_id TEXT NOT NULL, lane TEXT, zone TEXT, "
        "checkpoint TEXT, type TEXT, enabled INTEGER, locked INTEGER, observed TEXT, last_error TEXT, "
        "counters TEXT, updated_at TEXT, PRIMARY KEY (agent_id, device_id))"
    )
    db.execute("INSERT INTO devices (agent_id, device_id, lane) VALUES ('z/cp', 'io', 'in-1')")
    db.commit()
    db.close()
    store = SqliteStore(path)
    try:
        pk = [r[1] for r in store._db.execute("PRAGMA table_info(devices)") if r[5]]
        assert set(pk) == {"agent_id", "lane", "device_id"}
        assert store.list_devices() == []  # derived state: every agent's next status fills it again
    finally:
        store.close()


# ------------------------------------------------------------------ audit
def test_audit_chain_detects_altered_removed_and_truncated_entries(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "audit.db"
    store = SqliteStore(path)
    for i in range(5):
        store.audit("admin", "config.change", f"item{i}", {"value": i})
    assert store.verify_audit() == []
    store.close()

    def tamper(sql: str) -> list[str]:
        db = sqlite3.connect(path)
        db.execute(sql)
        db.commit()
        db.close()
        s = SqliteStore(path)
        try:
            return s.verify_audit()
        finally:
            s.close()

    problems = tamper("UPDATE audit_log SET details='{\"value\":42}' WHERE seq=3")
    assert any("entry 3" in p and "altered" in p for p in problems)
    problems = tamper("DELETE FROM audit_log WHERE seq=2")
    assert any("removed" in p for p in problems)
    problems = tamper("DELETE FROM audit_log WHERE seq=5")
    assert any("end" in p for p in problems)


def test_registry_records_for_all_zones_but_passes_only_for_one(store: SqliteStore) -> None:
    res = store.import_records(
        "*", RecordKind.ENTERPRISE, [{"etpsNo": "E1", "creditGrade": "general_credit"}], "t"
    )
    assert res.count == 1
    for zone in ("waigaoqiao-ftz", "waigaoqiao-park", "yangshan-port", "pudong-airport"):
        assert store.get_record(zone, RecordKind.ENTERPRISE, "E1") is not None, zone
    with pytest.raises(ImportRejected) as err:
        store.import_records("*", RecordKind.GATE_PASS, [gate_pass()], "t")
    assert err.value.errors[0].field == "zone"


def test_store_is_chosen_by_url_behind_the_interface(tmp_path) -> None:  # noqa: ANN001
    from central_monitor.store import HubStore, open_store

    s = open_store(f"sqlite:///{tmp_path / 'u.db'}")
    assert isinstance(s, HubStore) and s.health()["ok"]
    s.close()
    with pytest.raises(ValueError, match="unsupported store URL"):  # postgresql:// is PgStore (tests/deploy)
        open_store("mysql://hub@db/efence")


def test_a_batch_with_a_duplicate_or_a_reused_seq_falls_back_to_event_by_event(store: SqliteStore) -> None:
    """The bulk insert of a batch only runs when all of it is new; a resend mixed into a batch, the same
    event twice in one batch, or a seq reused by another id still count exactly as before."""
    first = [event("z/cp1", s) for s in (1, 2, 3)]
    assert store.ingest(first).inserted == 3
    mixed = [first[1], event("z/cp1", 4), first[1]]  # a resend, a new one, the resend again
    res = store.ingest(mixed)
    assert (res.inserted, res.duplicates, res.conflicts) == (1, 2, 0) and res.contiguous["z/cp1"] == 4
    reset = [event("z/cp1", 1), event("z/cp1", 2)]  # the agent's outbox started over
    res = store.ingest(reset)
    assert res.conflicts == 1 and res.inserted == 2 and res.contiguous["z/cp1"] == 2
    assert store.health()["counts"]["events"] == 6


def test_evidence_links_are_idempotent_per_transaction_and_image(store: SqliteStore) -> None:
    sha = "ab" * 32
    row, created = store.add_evidence("z/cp1/L1-1", "z/cp1", "cam1-plate.jpg", sha, "image/jpeg", 1234)
    assert created and row["transaction_id"] == "z/cp1/L1-1" and row["size"] == 1234
    again, created = store.add_evidence("z/cp1/L1-1", "z/cp1", "cam1-plate.jpg", sha, "image/jpeg", 1234)
    assert not created and again["id"] == row["id"]
    other, created = store.add_evidence("z/cp1/L1-2", "z/cp1", "cam1-plate.jpg", sha, "image/jpeg", 1234)
    assert created and other["id"] != row["id"]  # the same picture may belong to two transactions
    assert [e["id"] for e in store.list_evidence("z/cp1/L1-1")] == [row["id"]]
    assert store.get_evidence(other["id"])["transaction_id"] == "z/cp1/L1-2"  # type: ignore[index]
    assert store.get_evidence(10**9) is None
    store.ingest([tx_event("z/cp1", 1, "z/cp1/L1-1"), tx_event("z/cp1", 2, "z/cp1/L1-3")])
    counts = {t["transaction_id"]: t["evidence_count"] for t in store.list_transactions()}
    assert counts == {"z/cp1/L1-1": 1, "z/cp1/L1-3": 0}


def test_one_gate_exception_reported_by_edge_and_hub_counts_once(store: SqliteStore, zone: str) -> None:
    """The edge journals a `gate_exception` alarm for a refusal and the hub derives one from the decision:
    one occurrence, count 1, whichever arrives first; other occurrences still count."""
    agent = f"{zone}/cp1"

    def edge_alarm(seq: int, tid: str) -> EventEnvelope:
        return EventEnvelope.new(
            agent_id=agent, seq=seq, type="alarm", lane="L1", correlation_id=tid,
            payload={"alarm": "gate_exception", "severity": "critical", "detail": "REFUSE F1",
                     "transaction_id": tid},
        )  # fmt: skip

    store.ingest([tx_event(agent, 1, "t1", verdict="REFUSE", reasons=["F1"]), edge_alarm(2, "t1")])
    store.ingest([edge_alarm(3, "t2")])  # the edge's report first, the decision in a later batch
    store.ingest([tx_event(agent, 4, "t2", verdict="HOLD_MANUAL", reasons=["M1"])])
    store.ingest([edge_alarm(3, "t2")])  # a redelivered duplicate changes nothing either
    gate = {a["subject"]: a["count"] for a in store.list_alarms() if a["kind"] == "gate_exception"}
    assert gate == {f"{agent}/t1": 1, f"{agent}/t2": 1}
    # repeated real occurrences on one still-ringing alarm are still counted
    for seq in (5, 6):
        store.ingest(
            [event(agent, seq, "perimeter", kind="intrusion", segment="F-07", incident_id=f"inc-{seq}")]
        )
    (intrusion,) = [a for a in store.list_alarms() if a["kind"] == "perimeter_intrusion"]
    assert intrusion["count"] == 2
    assert intrusion["details"]["incident_id"] == "inc-6"  # the card shows what is happening now


# ------------------------------------------------------------------ retention
def test_retention_prunes_old_rows_but_never_what_is_still_open(
    store: SqliteStore, zone: str, tmp_path: Path
) -> None:
    """100-day-old history: closed things go, ringing alarms, unresolved transactions and their images,
    open transfers and events not yet acknowledged stay; a dry run changes nothing; one audit entry."""
    now = utcnow()
    old = now - timedelta(days=100)
    agent = f"{zone}/cp1"
    files = EvidenceFiles(tmp_path / "evidence")
    store.ingest(
        [
            event(agent, 1, "telemetry", temp=20),
            event(agent, 2, "lane_state", state="idle"),
            tx_event(agent, 3, "t1", verdict="REFUSE", reasons=["F1"]),
            event(agent, 4, "transaction_closed", transaction_id="t1", outcome="closed", at=iso(old)),
            tx_event(agent, 5, "t2", verdict="HOLD_MANUAL", reasons=["M1"]),  # held, never resolved
            event(agent, 7, "telemetry", temp=21),  # above the gap at 6: not acknowledged yet
        ],
        now=old,
    )
    store.ingest([event(agent, 8, "telemetry", temp=22)], now=now)  # recent
    shas = {}
    for tid in ("t1", "t2"):
        body = f"image of {tid}".encode()
        shas[tid] = hashlib.sha256(body).hexdigest()
        files.put(shas[tid], "image/jpeg", body)
        store.add_evidence(tid, agent, f"{tid}.jpg", shas[tid], "image/jpeg", len(body), now=old)
    alarms = {a["subject"]: a for a in store.list_alarms() if a["kind"] == "gate_exception"}
    store.ack_alarm(alarms[f"{agent}/t1"]["id"], "op1", "seen", now=old + timedelta(hours=1))
    with store._tx() as db:
        db.execute(
            "INSERT INTO transfers VALUES (?,?,?,?,?,?,?,?,?,?)",
            ("P-ARRIVED", "沪A1", zone, "cp1", "z2", iso(old), iso(old), iso(old), "in", "arrived"),
        )
        db.execute(
            "INSERT INTO transfers VALUES (?,?,?,?,?,?,?,NULL,NULL,?)",
            ("P-OPEN", "沪A2", zone, "cp1", "z2", iso(old), iso(old), "overdue"),
        )
    cfg = RetentionConfig(
        telemetry_days=7, events_days=30, transactions_days=90, evidence_days=90, alarms_days=30
    )
    before = store.health()["counts"]

    dry = prune(store, cfg, now=now, dry_run=True, evidence_dir=files.root)
    assert store.health()["counts"] == before and len(store.list_audit()) == 1  # the alarm ack
    steps: list[tuple[str, int, int]] = []
    report = prune(
        store, cfg, now=now, evidence_dir=files.root, progress=lambda *a: steps.append(a), actor="ops1"
    )
    assert report.counts == dry.counts
    expected = {"telemetry": 2, "events": 3, "evidence": 1, "transactions": 1, "transfers": 1, "alarms": 1}
    assert {k: v for k, v in report.counts.items() if v} == expected
    assert ("events", 3, 3) in steps

    seqs = sorted(e["seq"] for e in store._all("SELECT seq FROM events WHERE agent_id=?", (agent,)))
    assert seqs == [7, 8]  # seq 7 waits for the hole at 6; 8 is recent
    assert [t["transaction_id"] for t in store.list_transactions()] == ["t2"]
    assert [e["transaction_id"] for e in store.list_evidence("t2")] == ["t2"] and not store.list_evidence(
        "t1"
    )
    assert not files.path(shas["t1"], "image/jpeg").exists() and files.path(shas["t2"], "image/jpeg").exists()
    assert report.files_deleted == 1
    left = {a["subject"]: a["ringing"] for a in store.list_alarms()}
    assert left == {f"{agent}/t2": True}  # the ringing one stays, however old
    assert [t["pass_no"] for t in store.list_transfers()] == ["P-OPEN"]
    entry = store.list_audit()[0]
    assert (entry["actor"], entry["action"]) == ("ops1", "retention.prune")
    assert len(store.list_audit()) == 2
    assert store.verify_audit() == []
    again = prune(store, cfg, now=now)
    assert again.total == 0 and len(store.list_audit()) == 2  # an empty prune is not audited


def test_retention_config_refuses_evidence_below_domain_minimum() -> None:
    with pytest.raises(ValidationError, match="evidence_days"):
        RetentionConfig(evidence_days=30)
    with pytest.raises(ValidationError, match="must not exceed transactions_days"):
        RetentionConfig(evidence_days=400, transactions_days=200)
    with pytest.raises(ValidationError, match="telemetry_dayz"):
        RetentionConfig.model_validate({"telemetry_dayz": 3})
