"""Config push state per agent (issue 8, rule C7): the last signed offer and the agent's latest report.

The YAML of each agent's latest push is kept too (`agent_config_offer`), so the hub can sign it again
for an agent that was offline when it was pushed (offers are not retained): see `claim_config_resend`.
"""

from __future__ import annotations

import json
from typing import Any

from efence.contract import ConfigOffer, ConfigReport

from ..timeutil import iso, now_utc
from .base import StoreBase, _j, _row

# push states that the agent has not answered yet: the offer may never have reached it
AWAITING = ("signed", "sent", "not_sent")


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
            ttl_s = (offer.expires_at - offer.issued_at).total_seconds()
            db.execute(
                "INSERT INTO agent_config_offer (agent_id, offer_id, yaml_text, ttl_s, source, resends) "
                "VALUES (?,?,?,?,?,0) ON CONFLICT(agent_id) DO UPDATE SET offer_id=excluded.offer_id, "
                "yaml_text=excluded.yaml_text, ttl_s=excluded.ttl_s, source=excluded.source, resends=0, "
                "resent_at=NULL, resent_for=NULL",
                (offer.agent_id, offer.offer_id, offer.yaml_text, ttl_s, source),
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

    def config_offer_to_resend(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's latest push if the agent has not answered it (state signed/sent/not_sent): its
        offer id, YAML, lifetime, confirm window and issuer. None when answered (applied, unchanged,
        rejected, refused, rolled back, staged) or never pushed."""
        marks = ",".join("?" for _ in AWAITING)
        return self._one(
            "SELECT c.offer_id, c.offered_version, c.offered_by, c.confirm_within_s, c.state, o.yaml_text, "
            "o.ttl_s, o.source, o.resends FROM agent_config c JOIN agent_config_offer o "
            f"ON o.agent_id = c.agent_id AND o.offer_id = c.offer_id WHERE c.agent_id=? AND c.state IN ({marks})",  # noqa: S608
            (agent_id, *AWAITING),
        )

    def claim_config_resend(self, agent_id: str, offer_id: str, transition: str, offer: ConfigOffer) -> bool:
        """Claim the re-delivery of push `offer_id` for one online transition of the agent (`transition`
        names it, e.g. the `sent_at` of the status that said online). True once per transition, however
        many hub workers see that status; then the push is `signed` again (the caller publishes it and
        sets sent/not_sent) and audited as `config.resend`. False if already claimed or answered."""
        now = now_utc()
        marks = ",".join("?" for _ in AWAITING)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE agent_config_offer SET resends=resends+1, resent_at=?, resent_for=? "
                "WHERE agent_id=? AND offer_id=? AND coalesce(resent_for, '') != ? AND EXISTS ("
                f"SELECT 1 FROM agent_config c WHERE c.agent_id=? AND c.offer_id=? AND c.state IN ({marks}))",  # noqa: S608
                (iso(now), transition, agent_id, offer_id, transition, agent_id, offer_id, *AWAITING),
            )
            if cur.rowcount != 1:
                return False
            db.execute(
                "UPDATE agent_config SET state='signed' WHERE agent_id=? AND offer_id=?", (agent_id, offer_id)
            )
            n = db.execute("SELECT resends FROM agent_config_offer WHERE agent_id=?", (agent_id,)).fetchone()
            self._audit(
                db,
                "hub",
                "config.resend",
                agent_id,
                {
                    "offer_id": offer_id,
                    "version": offer.version,
                    "issued_by": offer.issued_by,
                    "nonce": offer.nonce,
                    "expires_at": iso(offer.expires_at),
                    "resend": n[0] if n else None,
                    "reason": "agent came online with the push unanswered",
                },
                now,
            )
            return True

    def apply_config_report(self, report: ConfigReport) -> dict[str, Any]:
        """Keep the agent's latest config report. A report not about the latest push does not move the
        push state (only the running version) if it is older than the push — a retained one re-read after
        a restart — or if the push is still unanswered: an agent that was offline re-reports its previous
        state on reconnecting, before the re-delivered push reaches it."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM agent_config WHERE agent_id=?", (report.agent_id,))
            old = row.fetchone()
            current = _row(row, old) if old else None
            at = iso(report.at)
            stale = bool(
                current
                and current["offer_id"]
                and report.offer_id != current["offer_id"]
                and ((at or "") < (current["offered_at"] or "") or current["state"] in AWAITING)
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
