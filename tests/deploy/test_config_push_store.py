"""The hub's record of config pushes, on SQLite and on PostgreSQL: the push is audited, the agent's
reports are kept, and a stale retained report (re-read after a restart) does not undo a newer push."""

from __future__ import annotations

from datetime import timedelta

import pytest

from central_monitor.store import HubStore
from efence.contract import ConfigOffer, ConfigReport, config_version, utcnow

AGENT = "yangshan-port/port-gate"
OLD, NEW = "id: a\n", "id: b\n"


def report(state: str, running: str, **kw: object) -> ConfigReport:
    return ConfigReport(agent_id=AGENT, state=state, running_version=running, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_push_is_audited_and_reports_move_the_state(store: HubStore) -> None:
    assert store.config_states() == {}
    store.apply_config_report(report("installed", config_version(OLD)))
    assert store.config_states()[AGENT]["push"] == "installed"

    offer = ConfigOffer.create(yaml_text=NEW, agent_id=AGENT, issued_by="admin")
    store.record_config_offer(offer, "admin", "zone.yaml")
    store.set_config_offer_state(AGENT, offer.offer_id, "sent")
    row = store.config_states()[AGENT]
    assert (row["state"], row["push"], row["offered_version"]) == ("sent", "pending", config_version(NEW))
    assert row["running_version"] == config_version(OLD)

    store.apply_config_report(
        report("staged", config_version(NEW), offer_id=offer.offer_id, version=offer.version, on_trial=True)
    )
    assert store.config_states()[AGENT]["push"] == "pending"
    row = store.apply_config_report(
        report("rolled_back", config_version(OLD), offer_id=offer.offer_id, version=offer.version, detail="x")
    )
    assert (row["push"], row["running_version"], row["on_trial"]) == (
        "rolled_back",
        config_version(OLD),
        False,
    )

    bad = report("rejected", config_version(OLD), code="invalid", errors=["pushed config:2: id: expected"])
    assert store.apply_config_report(bad)["errors"] == ["pushed config:2: id: expected"]

    audit = [a for a in store.list_audit() if a["action"] == "config.push"]
    assert len(audit) == 1 and audit[0]["target"] == AGENT and audit[0]["actor"] == "admin"
    assert audit[0]["details"]["version"] == config_version(NEW)
    assert store.verify_audit() == []


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_a_stale_retained_report_does_not_undo_a_newer_push(store: HubStore) -> None:
    offer = ConfigOffer.create(yaml_text=NEW, agent_id=AGENT, issued_by="admin")
    store.record_config_offer(offer, "admin")
    store.set_config_offer_state(AGENT, offer.offer_id, "sent")
    earlier = utcnow() - timedelta(minutes=5)
    row = store.apply_config_report(report("applied", config_version(OLD), offer_id="older-push", at=earlier))
    assert row["state"] == "sent" and row["push"] == "pending"  # the push is still awaited
    assert row["running_version"] == config_version(OLD)  # but what runs is taken as reported
