"""Evidence image rows (the bytes live in `central_monitor.evidence.EvidenceFiles`, by sha256)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..timeutil import iso, now_utc
from .base import (
    StoreBase,
    _row,
)


class EvidenceMixin(StoreBase):
    """Evidence image rows linked to transactions."""

    def add_evidence(
        self,
        transaction_id: str,
        agent_id: str,
        name: str,
        sha256: str,
        content_type: str,
        size: int,
        now: datetime | None = None,
    ) -> tuple[dict[str, Any], bool]:
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO evidence (transaction_id, agent_id, name, sha256, content_type, size, "
                "received_at) VALUES (?,?,?,?,?,?,?)",
                (transaction_id, agent_id, name, sha256, content_type, size, iso(now or now_utc())),
            )
            created = cur.rowcount == 1
            cur = db.execute(
                "SELECT * FROM evidence WHERE transaction_id=? AND sha256=?", (transaction_id, sha256)
            )
            return _row(cur, cur.fetchone()), created

    def list_evidence(self, transaction_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM evidence WHERE transaction_id=? ORDER BY id", (transaction_id,))

    def get_evidence(self, image_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM evidence WHERE id=?", (image_id,))
