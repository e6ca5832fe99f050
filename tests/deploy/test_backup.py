"""Backup and restore of the hub store with deploy/backup/hub_backup.py, taken while the hub writes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from central_monitor.auth import Role
from central_monitor.store import open_store
from efence.contract import EventEnvelope

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "deploy" / "backup" / "hub_backup.py"


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def _events(agent: str, first: int, n: int) -> list[EventEnvelope]:
    return [
        EventEnvelope.new(agent_id=agent, seq=s, type="telemetry", payload={"s": s})
        for s in range(first, first + n)
    ]


def _fill(url: str) -> int:
    s = open_store(url)
    try:
        s.create_user("chief", "correct horse battery", Role.ADMIN)
        for i in range(10):
            s.ingest(_events("zb/gate-1", 1 + i * 100, 100))
        s.audit("test", "backup-drill", "hub", {"n": 1})
        return s.health()["counts"]["events"]
    finally:
        s.close()


def _check_restored(url: str, at_least: int) -> None:
    s = open_store(url)
    try:
        h = s.health()
        assert h["ok"] and h["counts"]["events"] >= at_least
        assert s.contiguous_seq("zb/gate-1") == h["counts"]["events"]  # a consistent snapshot: no holes
        assert s.verify_audit() == []
        assert s.authenticate("chief", "correct horse battery") is not None
    finally:
        s.close()


def _writer(url: str, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        s = open_store(url)
        try:
            seq = 1001
            while not stop.is_set() and seq < 50_000:
                s.ingest(_events("zb/gate-1", seq, 50))
                seq += 50
        finally:
            s.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_sqlite_online_backup_and_restore(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    n = _fill(url)
    stop = threading.Event()
    w = _writer(url, stop)  # the hub keeps writing during the backup
    try:
        res = tool("backup", url, str(tmp_path / "backups" / "hub-1.db"))
    finally:
        stop.set()
        w.join(30)
    assert res.returncode == 0, res.stderr
    target = f"sqlite:///{tmp_path / 'restored' / 'hub.db'}"
    (tmp_path / "restored").mkdir()
    assert tool("restore", str(tmp_path / "backups" / "hub-1.db"), target).returncode == 0
    _check_restored(target, n)
    v = tool("verify", target)
    assert v.returncode == 0, v.stdout + v.stderr
    again = tool("restore", str(tmp_path / "backups" / "hub-1.db"), target)
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr


def test_postgresql_backup_and_restore(make_pg_database, tmp_path: Path) -> None:  # noqa: ANN001
    source, target = make_pg_database(), make_pg_database()
    n = _fill(source)
    stop = threading.Event()
    w = _writer(source, stop)
    try:
        res = tool("backup", source, str(tmp_path / "hub.dump"))
    finally:
        stop.set()
        w.join(30)
    assert res.returncode == 0, res.stderr
    r = tool("restore", str(tmp_path / "hub.dump"), target)
    assert r.returncode == 0, r.stderr
    _check_restored(target, n)
    assert tool("verify", target).returncode == 0
