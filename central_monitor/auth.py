"""Users, roles, password hashing and bearer tokens — standard library only (scrypt, secrets).

Roles are ordered: a supervisor may do everything an operator may, and so on. Tokens are random;
the store keeps only their SHA-256, so a copied database does not hand out sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from enum import IntEnum


class Role(IntEnum):
    VIEWER = 1  # looks at the wall: every GET
    OPERATOR = 2  # acknowledges alarms, sends lane commands
    SUPERVISOR = 3  # locks lanes, imports records, second officer on I1/I2 overrides
    ADMIN = 4  # manages users

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {name!r}; expected viewer, operator, supervisor or admin"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$hash` (base64); scrypt is memory-hard, so offline guessing is slow."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(dk).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, dk = stored.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(dk)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
