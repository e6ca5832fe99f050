"""In-process fan-out of live changes (new transactions, alarms, lanes, agents) to dashboard streams.

Live push is a convenience, not the record: a slow screen loses its oldest queued items (and is
told so with a `resync` item) rather than slowing ingest; the dashboard then reloads the lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class LiveBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subs: set[asyncio.Queue[dict[str, Any]]] = set()
        self._size = queue_size

    def publish(self, item: dict[str, Any]) -> None:
        for q in list(self._subs):
            if q.full():
                while not q.empty():
                    q.get_nowait()
                q.put_nowait({"type": "resync"})
            q.put_nowait(item)

    def publish_all(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.publish(item)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._size + 1)
        self._subs.add(q)
        try:
            yield q
        finally:
            self._subs.discard(q)
