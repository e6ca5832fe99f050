"""One SQLite connection owned by one thread, so blocking disk work never runs on the event loop."""

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteThread:
    """Runs callables `fn(conn)` on a dedicated thread that owns the connection (WAL, synchronous=FULL)."""

    def __init__(self, path: str | Path, *, name: str = "sqlite"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.conn: sqlite3.Connection = self._pool.submit(self._open).result()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an event committed here survives a crash or power cut
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking call from any non-loop thread (or at start-up)."""
        return self._pool.submit(fn, self.conn).result()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self._pool.submit(fn, self.conn))

    def close(self) -> None:
        try:
            self._pool.submit(self.conn.close).result()
        finally:
            self._pool.shutdown(wait=True)
