#!/usr/bin/env python3
"""Back up and restore the hub store, online (the hub keeps running during a backup).

    hub_backup.py backup  STORE_URL FILE    # SQLite: online backup API; PostgreSQL: pg_dump -Fc
    hub_backup.py restore FILE STORE_URL    # into a NEW file / an EMPTY database; refuses to overwrite
    hub_backup.py verify  STORE_URL         # integrity + the audit hash chain + counts

STORE_URL is what the hub uses: `sqlite:////var/lib/efence/hub.db` or `postgresql://efence@db/efence`
(passwords from PGPASSWORD / ~/.pgpass, never on the command line). A SQLite backup is a consistent
snapshot taken page by page without stopping writers (sqlite3 `Connection.backup`), checked with
`PRAGMA integrity_check` before it is renamed into place; a PostgreSQL backup is `pg_dump
--format=custom`, one consistent snapshot (MVCC) of the database while workers keep writing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if "://" not in url:
        return Path(url)
    return None


def _exe(name: str) -> str:
    exe = shutil.which(name)
    if not exe:
        sys.exit(f"{name} not found: install the PostgreSQL client (same major version as the server)")
    return exe


def backup(url: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)
    if (path := _sqlite_path(url)) is not None:
        if not path.is_file():
            sys.exit(f"no such hub store: {path}")
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst, pages=1024)  # yields between steps: the hub's writers keep going
            ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                sys.exit(f"backup failed its integrity check: {ok}")
        finally:
            dst.close()
            src.close()
    else:
        subprocess.run(
            [_exe("pg_dump"), "--format=custom", "--no-owner", f"--file={tmp}", f"--dbname={url}"],
            check=True,
            timeout=3600,
        )
    os.replace(tmp, out)
    print(f"backup of {_redact(url)} written to {out} ({out.stat().st_size} bytes)")


def restore(file: Path, url: str) -> None:
    if not file.is_file():
        sys.exit(f"no such backup: {file}")
    if (path := _sqlite_path(url)) is not None:
        if path.exists():
            sys.exit(f"refusing to overwrite {path}: stop the hub, move the old file away, then restore")
        src = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.unlink(missing_ok=True)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
            src.close()
        os.replace(tmp, path)
    else:
        subprocess.run(
            [
                _exe("pg_restore"),
                "--no-owner",
                "--exit-on-error",
                "--single-transaction",
                f"--dbname={url}",
                str(file),
            ],
            check=True,
            timeout=3600,
        )
    print(f"restored {file} into {_redact(url)}")


def verify(url: str) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from central_monitor.store import open_store

    store = open_store(url)
    try:
        health = store.health()
        problems = store.verify_audit()
    finally:
        store.close()
    print(json.dumps({"health": health, "audit_problems": problems}, indent=2, default=str))
    return 0 if health.get("ok") and not problems else 1


def _redact(url: str) -> str:
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backup")
    b.add_argument("store_url")
    b.add_argument("file", type=Path)
    r = sub.add_parser("restore")
    r.add_argument("file", type=Path)
    r.add_argument("store_url")
    v = sub.add_parser("verify")
    v.add_argument("store_url")
    a = p.parse_args(argv)
    if a.cmd == "backup":
        backup(a.store_url, a.file)
    elif a.cmd == "restore":
        restore(a.file, a.store_url)
    else:
        return verify(a.store_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
