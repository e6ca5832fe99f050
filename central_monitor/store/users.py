"""Users, tokens, the hash-chained audit log and the operator commands sent to the edges."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from efence.contract import (
    CommandResult,
    SignedCommand,
)

from ..auth import Role, check_password, hash_password, new_token, token_digest
from ..timeutil import iso, now_utc
from .base import (
    GENESIS,
    AuthUser,
    StoreBase,
    _audit_hash,
    _j,
    _row,
)


class UsersMixin(StoreBase):
    """Users, bearer tokens, the audit chain and operator commands."""

    def create_user(self, username: str, password: str, role: Role, actor: str = "cli") -> None:
        if not username or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError("username: letters, digits, - _ . only")
        hashed = hash_password(password)
        now = now_utc()
        with self._tx() as db:
            db.execute(
                "INSERT INTO users VALUES (?,?,?,?,0) ON CONFLICT(username) DO UPDATE SET "
                "password_hash=excluded.password_hash, role=excluded.role, disabled=0",
                (username, hashed, role.label, iso(now)),
            )
            db.execute("DELETE FROM tokens WHERE username=?", (username,))
            self._audit(db, actor, "user.set", username, {"role": role.label}, now)

    def list_users(self) -> list[dict[str, Any]]:
        return self._all("SELECT username, role, created_at, disabled FROM users ORDER BY username")

    def authenticate(self, username: str, password: str) -> AuthUser | None:
        """Thread-safe; the API calls it off the store thread so scrypt's ~0.1 s never delays ingest."""
        row = self._one("SELECT password_hash, role, disabled FROM users WHERE username=?", (username,))
        if not row or row["disabled"] or not check_password(password, row["password_hash"]):
            return None
        return AuthUser(username, Role.parse(row["role"]))

    def issue_token(self, username: str, ttl_s: float = 12 * 3600) -> str:
        token = new_token()
        now = now_utc()
        with self._tx() as db:
            db.execute("DELETE FROM tokens WHERE expires_at < ?", (iso(now),))
            db.execute(
                "INSERT INTO tokens VALUES (?,?,?,?)",
                (token_digest(token), username, iso(now), iso(now + timedelta(seconds=ttl_s))),
            )
        return token

    def revoke_token(self, token: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM tokens WHERE token_hash=?", (token_digest(token),))

    def user_for_token(self, token: str) -> AuthUser | None:
        row = self._one(
            "SELECT u.username, u.role FROM tokens t JOIN users u USING (username) "
            "WHERE t.token_hash=? AND t.expires_at > ? AND u.disabled=0",
            (token_digest(token), iso(now_utc())),
        )
        return AuthUser(row["username"], Role.parse(row["role"])) if row else None

    # ----------------------------------------------------------------- audit
    def audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> int:
        with self._tx() as db:
            return self._audit(db, actor, action, target, details, now_utc())

    def _audit(
        self,
        db: sqlite3.Connection,
        actor: str,
        action: str,
        target: str,
        details: dict[str, Any],
        now: datetime,
    ) -> int:
        last = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        at, body = iso(now) or "", _j(details)
        digest = _audit_hash(prev, seq, at, actor, action, target, body)
        db.execute(
            "INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?)",
            (seq, at, actor, action, target, body, prev, digest),
        )
        db.execute(
            "INSERT INTO meta VALUES ('audit_head', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (f"{seq}:{digest}",),
        )
        return seq

    def list_audit(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?", (limit,))
        for r in rows:
            r["details"] = json.loads(r["details"])
        return rows

    def verify_audit(self) -> list[str]:
        """Every problem found re-hashing the chain: altered, removed, inserted or truncated entries."""
        problems: list[str] = []
        prev, expected_seq = GENESIS, 1
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, at, actor, action, target, details, prev_hash, hash FROM audit_log ORDER BY seq"
            ).fetchall()
            head = self._db.execute("SELECT value FROM meta WHERE key='audit_head'").fetchone()
        for seq, at, actor, action, target, details, prev_hash, digest in rows:
            if seq != expected_seq:
                problems.append(f"entry {expected_seq}..{seq - 1} missing (removed)")
            if prev_hash != prev:
                problems.append(
                    f"entry {seq}: previous-hash link broken (an earlier entry was removed or altered)"
                )
            if _audit_hash(prev_hash, seq, at, actor, action, target or "", details) != digest:
                problems.append(f"entry {seq}: content does not match its hash (altered)")
            prev, expected_seq = digest, seq + 1
        if head:
            head_seq, head_hash = head[0].split(":", 1)
            if int(head_seq) != expected_seq - 1 or head_hash != prev:
                problems.append(
                    f"chain ends at entry {expected_seq - 1}, head says {head_seq} (entries removed at the end)"
                )
        elif rows:
            problems.append("audit head record missing")
        return problems

    # ----------------------------------------------------------------- commands
    def record_command(self, signed: SignedCommand, issued_by: str) -> None:
        c = signed.command
        now = now_utc()
        with self._tx() as db:
            db.execute(
                "INSERT INTO commands VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'signed',NULL,NULL,NULL)",
                (
                    c.command_id,
                    c.agent_id,
                    c.lane,
                    c.action.value,
                    c.operator_id,
                    c.second_operator_id,
                    c.reason_code,
                    c.reason_text,
                    _j(c.params),
                    iso(c.issued_at),
                    iso(c.expires_at),
                    issued_by,
                ),
            )
            self._audit(
                db,
                issued_by,
                f"command.{c.action.value}",
                f"{c.agent_id}/{c.lane}",
                {
                    "command_id": c.command_id,
                    "second_operator_id": c.second_operator_id,
                    "reason_code": c.reason_code,
                    "reason_text": c.reason_text,
                    "params": c.params,
                },
                now,
            )

    def set_command_status(self, command_id: str, status: str) -> None:
        """`signed` → `sent` or `not_sent` once the publish is known (the agent's result comes later)."""
        with self._tx() as db:
            db.execute(
                "UPDATE commands SET status=? WHERE command_id=? AND status='signed'", (status, command_id)
            )

    def apply_command_result(
        self, result: CommandResult, now: datetime | None = None
    ) -> dict[str, Any] | None:
        now = now or now_utc()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE commands SET status=?, code=?, detail=?, result_at=? WHERE command_id=?",
                (result.status, result.code, result.detail, iso(result.at), result.command_id),
            )
            if cur.rowcount == 0:
                return None
            row = db.execute("SELECT * FROM commands WHERE command_id=?", (result.command_id,))
            return _row(row, row.fetchone())

    def list_commands(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM commands ORDER BY issued_at DESC LIMIT ?", (limit,))
