"""`HubRunner`: the hub as an async context manager inside someone else's event loop (`efence demo`).

    async with HubRunner(db_url="sqlite:///hub.sqlite", broker_url="mqtt://127.0.0.1:1883",
                         port=8080, command_keys={"yangshan-port/gate-1": key}) as hub:
        hub.ensure_admin("admin", password)
        await hub.import_records("yangshan-port", [("gate_pass", pass_no, record), ...])
        ...
    # leaving the block cancels the hub and waits (≤ 5 s) for it to stop

Edge agents pull `/api/records/{zone}` with the header from `efence.contract.agent_http_auth`
signed with their checkpoint key (the same key the hub signs their commands with).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from efence.contract import RecordKind

from .hub import Hub
from .keys import KeyLookup, key_lookup
from .store import ImportResult, SqliteStore

log = logging.getLogger("efence.hub")


class HubRunner:
    def __init__(
        self,
        *,
        db_url: str,
        broker_url: str = "mqtt://127.0.0.1:1883",
        host: str = "127.0.0.1",
        port: int = 8080,
        command_keys: Mapping[str, bytes] | None = None,
        keys_dir: str | Path | None = None,
        broker_wait_s: float = 5.0,
        **hub_kwargs: Any,
    ) -> None:
        fallback = key_lookup(keys_dir)
        keys = dict(command_keys or {})

        def key_for(agent_id: str) -> bytes | None:
            return keys.get(agent_id) or fallback(agent_id)

        self.key_for: KeyLookup = key_for
        self.hub = Hub(db_url, broker=broker_url, host=host, port=port, key_for=key_for, **hub_kwargs)
        self.broker_wait_s = broker_wait_s
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.hub.url

    @property
    def store(self) -> SqliteStore:
        return self.hub.store  # type: ignore[return-value]

    async def __aenter__(self) -> HubRunner:
        self._task = asyncio.create_task(self.hub.run(), name="hub")
        async with asyncio.timeout(10):
            while not self.hub._server.started:
                if self._task.done():
                    self._task.result()  # raises why the hub could not start
                await asyncio.sleep(0.02)
        with contextlib.suppress(TimeoutError):  # the broker may come later; ingest keeps retrying
            await asyncio.wait_for(self.hub.ingest.connected.wait(), self.broker_wait_s)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self, timeout: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            await asyncio.wait_for(task, timeout)
        self.hub.store.close()

    def ensure_admin(self, username: str, password: str, role: str = "admin") -> None:
        """Create or reset the user (blocking, fast enough at start-up)."""
        self.hub.create_user(username, password, role)

    def token_for(self, username: str) -> str:
        return self.hub.issue_token(username)

    async def import_records(
        self,
        zone: str,
        records: Iterable[tuple[str, str, dict[str, Any]]] | Iterable[dict[str, Any]],
        *,
        kind: str | None = None,
        actor: str = "demo",
    ) -> ImportResult:
        """Import `(kind, key, record)` tuples (or plain rows with `kind=`) all-or-nothing, then publish.

        Raises `central_monitor.records.ImportRejected` with every row error; nothing is imported then.
        """
        groups: dict[RecordKind, list[dict[str, Any]]] = {}
        for item in records:
            if isinstance(item, dict):
                if kind is None:
                    raise ValueError("plain rows need kind=")
                groups.setdefault(RecordKind(kind), []).append(item)
            else:
                k, _key, rec = item
                groups.setdefault(RecordKind(k), []).append(rec)
        store = self.store
        res = await store.acall(store.import_many, zone, list(groups.items()), actor)
        for delta in res.deltas:
            await self.hub.ingest.publish_delta(delta)
        return res
