"""Config push state per agent (issue 8, rule C7): the last signed offer and the agent's latest report."""

from __future__ import annotations

import json
from typing import Any

from efence.contract import ConfigOffer, ConfigReport

from ..timeutil import iso, now_utc
from .base import StoreBase, _j, _row


class ConfigPushMixin(StoreBase):
    """Offers the hub signed and sent, and what each agent reported back (`agent_config` table)."""

    def record_config_offer(self, offer: ConfigOffer, issued_by: str, source: str = "") -> None:
        """A signed config offer, before it is published: state `signed`, and one audit entry."""
        now = now_utc()
        with self._tx() as db:
            cols = (offer.offer_id, offer.version, issued_by, iso(offer.issued_at), offer.confirm_within_s)
            if db.execute("SELECT 1 FROM agent_config WHERE agent_id=?", (offer.agent_id,)).fetchone():
                db.execute(
                    "UPDATE agent_config SET offer_id=?, offered_version=?, offered_by=?, offered_at=?, "
                    "confirm_within_s=?, state='signed', code='', detail='', errors='[]' WHERE agent_id=?",
                    (*cols, offer.agent_id),
                )
            else:
                db.execute(
                    "INSERT INTO agent_config (agent_id, offer_id, offered_version, offered_by, offered_at, "
                    "confirm_within_s, state, errors) VALUES (?,?,?,?,?,?,'signed','[]')",
                    (offer.agent_id, *cols),
                )
            self._audit(
                db,
                issued_by,
                "config.push",
                offer.agent_id,
                {
                    "offer_id": offer.offer_id,
                    "version": offer.version,
                    "bytes": len(offer.yaml_text.encode()),
                    "confirm_within_s": offer.confirm_within_s,
                    "source": source,
                },
                now,
            )

    def set_config_offer_state(self, agent_id: str, offer_id: str, state: str) -> None:
        """`signed` → `sent` or `not_sent` once the publish is known (the agent's report comes later)."""
        with self._tx() as db:
            db.execute(
                "UPDATE agent_config SET state=? WHERE agent_id=? AND offer_id=? AND state='signed'",
                (state, agent_id, offer_id),
            )

    def apply_config_report(self, report: ConfigReport) -> dict[str, Any]:
        """Keep the agent's latest config report. A report older than the latest push and not about it
        (a retained one re-read after a restart) updates the running version but not the push state."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM agent_config WHERE agent_id=?", (report.agent_id,))
            old = row.fetchone()
            current = _row(row, old) if old else None
            at = iso(report.at)
            stale = bool(
                current
                and current["offer_id"]
                and report.offer_id != current["offer_id"]
                and (at or "") < (current["offered_at"] or "")
            )
            if current is None:
                db.execute("INSERT INTO agent_config (agent_id) VALUES (?)", (report.agent_id,))
            if stale:
                db.execute(
                    "UPDATE agent_config SET running_version=?, on_trial=? WHERE agent_id=?",
                    (report.running_version, int(report.on_trial), report.agent_id),
                )
            else:
                db.execute(
                    "UPDATE agent_config SET state=?, version=?, running_version=?, on_trial=?, code=?, "
                    "detail=?, errors=?, reported_at=? WHERE agent_id=?",
                    (
                        report.state,
                        report.version,
                        report.running_version,
                        int(report.on_trial),
                        report.code,
                        report.detail,
                        _j(report.errors),
                        at,
                        report.agent_id,
                    ),
                )
            out = db.execute("SELECT * FROM agent_config WHERE agent_id=?", (report.agent_id,))
            return _config_public(_row(out, out.fetchone()))

    def config_states(self) -> dict[str, dict[str, Any]]:
        """Per agent id: the last push and the agent's latest config report."""
        return {r["agent_id"]: _config_public(r) for r in self._all("SELECT * FROM agent_config")}


def _config_public(r: dict[str, Any]) -> dict[str, Any]:
    """A config row for the API; `push` is the one word the dashboard shows."""
    out = dict(r)
    out["errors"] = json.loads(r["errors"]) if r.get("errors") else []
    out["on_trial"] = bool(r.get("on_trial"))
    state = r.get("state") or ""
    out["push"] = (
        "pending" if state in ("signed", "sent", "staged") or out["on_trial"] else state or "installed"
    )
    return out
