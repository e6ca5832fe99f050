"""Retention from the outside: `efence hub prune` as an operator runs it, and the running hub's own prune."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from central_monitor.retention import RetentionConfig
from central_monitor.store import SqliteStore
from efence.commands import hub as hub_cli
from efence.contract import utcnow

from .hubkit import event, running_hub, tx_event, wait_for

runner = CliRunner()


def seed(db: Path, zone: str, days_old: float = 30) -> None:
    """Acknowledged telemetry and a decision from `days_old` ago, plus one recent telemetry event."""
    store = SqliteStore(db)
    old = utcnow() - timedelta(days=days_old)
    agent = f"{zone}/cp1"
    store.ingest([event(agent, s, "telemetry", temp=s) for s in range(1, 6)], now=old)
    store.ingest([tx_event(agent, 6, "t1")], now=old)
    store.ingest([event(agent, 7, "telemetry", temp=7)])
    store.close()


def event_count(db: Path) -> int:
    store = SqliteStore(db)
    try:
        return int(store.health()["counts"]["events"])
    finally:
        store.close()


def test_cli_prune_dry_run_then_for_real_with_audit(tmp_path: Path, zone: str) -> None:
    db = tmp_path / "hub.db"
    seed(db, zone)
    r = runner.invoke(hub_cli.app, ["prune", "--db", str(db), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "telemetry" in r.output and "would remove 5 row(s)" in r.output
    assert event_count(db) == 7
    cfg = tmp_path / "retention.yaml"
    cfg.write_text("retention:\n  telemetry_days: 7\n  events_days: 10\n", encoding="utf-8")
    r = runner.invoke(hub_cli.app, ["prune", "--db", str(db), "--config", str(cfg), "--actor", "ops1"])
    assert r.exit_code == 0, r.output
    assert "removed 6 row(s)" in r.output and "audit-logged" in r.output
    assert event_count(db) == 1  # only the recent event is left
    store = SqliteStore(db)
    (entry,) = store.list_audit()
    assert (entry["actor"], entry["action"]) == ("ops1", "retention.prune")
    assert entry["details"]["counts"]["telemetry"] == 5 and entry["details"]["counts"]["events"] == 1
    store.close()


def test_cli_prune_refuses_a_bad_config_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "retention.yaml"
    cfg.write_text("evidence_days: 30\nkeep_forever: true\n", encoding="utf-8")
    r = runner.invoke(hub_cli.app, ["prune", "--db", str(tmp_path / "hub.db"), "--config", str(cfg)])
    assert r.exit_code == 1
    assert "evidence_days" in r.output and "greater than or equal to 90" in r.output
    assert "keep_forever" in r.output


async def test_running_hub_prunes_periodically(tmp_path: Path, zone: str) -> None:
    seed(tmp_path / "hub.db", zone)
    retention = RetentionConfig(telemetry_days=7, events_days=10, interval_s=0.3)
    async with running_hub(tmp_path, retention=retention) as hub:
        report = await wait_for(lambda: hub.last_prune, timeout=10)
        assert report["counts"]["telemetry"] == 5 and report["counts"]["events"] == 1
        assert hub.store.health()["counts"]["events"] == 1
        assert [a["action"] for a in hub.store.list_audit()] == ["retention.prune"]
