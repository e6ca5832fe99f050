"""Per-checkpoint command-signing keys, read from a key directory or the environment — never from configs.

Lookup order for agent `zone/checkpoint`:
1. env `EFENCE_KEY_<ZONE>_<CHECKPOINT>` (upper case, `-` → `_`), hex;
2. file `<keys_dir>/<zone>/<checkpoint>.key`, hex (64+ hex characters) or raw bytes.
`keys_dir` defaults to env `EFENCE_KEYS_DIR`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

KeyLookup = Callable[[str], bytes | None]


def env_name(agent_id: str) -> str:
    zone, _, checkpoint = agent_id.partition("/")
    return f"EFENCE_KEY_{zone}_{checkpoint}".upper().replace("-", "_")


def _decode(raw: bytes) -> bytes:
    text = raw.strip()
    try:
        if len(text) >= 32 and all(c in b"0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text.decode())
    except ValueError:
        pass
    return raw


def key_lookup(keys_dir: str | Path | None = None) -> KeyLookup:
    base = (
        Path(keys_dir)
        if keys_dir
        else (Path(os.environ["EFENCE_KEYS_DIR"]) if os.environ.get("EFENCE_KEYS_DIR") else None)
    )

    def lookup(agent_id: str) -> bytes | None:
        if "/" not in agent_id or ".." in agent_id:
            return None
        value = os.environ.get(env_name(agent_id))
        if value:
            return _decode(value.encode())
        if base is not None:
            zone, _, checkpoint = agent_id.partition("/")
            path = base / zone / f"{checkpoint}.key"
            if path.is_file():
                return _decode(path.read_bytes())
        return None

    return lookup
