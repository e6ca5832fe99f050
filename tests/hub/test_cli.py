"""`efence hub create-admin | import` and `efence audit verify`, run as a user would run them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from central_monitor.store import SqliteStore
from efence.commands import audit, hub

runner = CliRunner()

PASSES_CSV = """passportNo,ioTypecd,passportTypecd,bindTypecd,rltTbTypecd,rltNo,vehicleNo,vehicleIcNo,vehicleWt,containerNo,containerWt,totalWt,stucd
Z2248I261128000000000001,I,3,2,1,QD2248I00000000001,沪A12345,E2000000000000000000001,15000,TGHU1234567,3800,30000,1
Z2248I261128000000000002,I,3,2,1,QD2248I00000000001,沪A54321,E2000000000000000000002,15500,"MSCU7654321,CSNU1111112",7600,36000,1
"""


def test_create_admin_then_login(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    r = runner.invoke(
        hub.app, ["create-admin", "admin", "--db", str(db)], env={"EFENCE_ADMIN_PASSWORD": "s3cret-pass"}
    )
    assert r.exit_code == 0, r.output
    store = SqliteStore(db)
    user = store.authenticate("admin", "s3cret-pass")
    assert user is not None and user.role.label == "admin"
    assert store.authenticate("admin", "wrong") is None
    store.close()
    r = runner.invoke(
        hub.app, ["create-admin", "admin", "--db", str(db)], env={"EFENCE_ADMIN_PASSWORD": "short"}
    )
    assert r.exit_code == 1


def test_import_csv_and_reject_bad_file(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    good = tmp_path / "passes.csv"
    good.write_text(PASSES_CSV, encoding="utf-8")
    r = runner.invoke(hub.app, ["import", "yangshan-port", str(good), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "imported 2 gate_pass" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text(PASSES_CSV.replace(",I,3,", ",X,3,", 1).replace("36000", "lots"), encoding="utf-8")
    r = runner.invoke(hub.app, ["import", "yangshan-port", str(bad), "--db", str(db)])
    assert r.exit_code == 1
    assert "row 1, field ioTypecd: expected one of I/E" in r.output
    assert "row 2, field totalWt" in r.output
    store = SqliteStore(db)
    page = store.records_page("yangshan-port", 0)
    assert page.head_seq == 2  # the bad file added nothing
    rec = {d.key: d.record for d in page.deltas}["Z2248I261128000000000002"]
    assert rec["containerNo"] == ["MSCU7654321", "CSNU1111112"] and rec["totalWt"] == 36000.0
    store.close()


def test_audit_verify_passes_then_catches_tampering(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    runner.invoke(
        hub.app, ["create-admin", "admin", "--db", str(db)], env={"EFENCE_ADMIN_PASSWORD": "s3cret-pass"}
    )
    good = tmp_path / "passes.csv"
    good.write_text(PASSES_CSV, encoding="utf-8")
    runner.invoke(hub.app, ["import", "yangshan-port", str(good), "--db", str(db), "--actor", "clerk"])
    r = runner.invoke(audit.app, ["verify", "--db", str(db)])
    assert r.exit_code == 0 and "intact" in r.output, r.output
    con = sqlite3.connect(db)
    con.execute("UPDATE audit_log SET actor='someone-else' WHERE action='records.import'")
    con.commit()
    con.close()
    r = runner.invoke(audit.app, ["verify", "--db", str(db)])
    assert r.exit_code == 1
    assert "entry 2" in r.output and "NOT intact" in r.output
    assert runner.invoke(audit.app, ["verify", "--db", str(tmp_path / "missing.db")]).exit_code == 2


def test_hub_run_serves_and_stops_on_ctrl_c_within_5_s(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    import uuid

    import httpx

    from .hubkit import free_port

    port = free_port()
    db = tmp_path / "hub.db"
    r = runner.invoke(
        hub.app, ["create-admin", "admin", "--db", str(db)], env={"EFENCE_ADMIN_PASSWORD": "s3cret-pass"}
    )
    assert r.exit_code == 0
    from firmware_configs.loader import ZONES_DIR

    site_zones = (
        tmp_path / "zones"
    )  # a site with one zone: the wall map shows the site's, not the shipped four
    site_zones.mkdir()
    (site_zones / "yangshan-port.yaml").write_text(
        (ZONES_DIR / "yangshan-port.yaml").read_text("utf-8"), "utf-8"
    )
    code = "import sys; from efence.commands.hub import app; sys.argv[0] = 'efence hub'; app()"
    cmd = [sys.executable, "-c", code, "run", "--db", str(db), "--port", str(port),
           "--client-id", f"test-cli-hub-{uuid.uuid4().hex[:6]}", "--log-level", "warning",
           "--zones-dir", str(site_zones)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        deadline = time.monotonic() + 20
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).json()
                if health["broker"]["connected"]:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert health and health["ok"] and health["store"]["ok"], health
        login = {"username": "admin", "password": "s3cret-pass"}
        token = httpx.post(f"http://127.0.0.1:{port}/api/login", json=login).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        site_map = httpx.get(f"http://127.0.0.1:{port}/api/map", headers=headers).json()
        assert [z["id"] for z in site_map["zones"]] == ["yangshan-port"]
        # a dashboard is still connected to the live stream when Ctrl-C comes
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/api/stream", headers=headers, timeout=10
        ) as stream:
            assert stream.status_code == 200
            assert next(stream.iter_lines()).startswith("retry:")
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            proc.wait(timeout=5)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
