"""`Hub`: ingest + HTTP API + periodic checks in one asyncio TaskGroup; cancel it to stop (< 5 s).

hub = Hub("sqlite:///var/hub.db", broker="mqtt://127.0.0.1:1883", port=8080)
hub.create_user("admin", password, "admin")       # blocking, before or while running
task = asyncio.create_task(hub.run())
await hub.wait_ready()                             # HTTP listening (broker may still be connecting)
...
task.cancel()                                      # graceful: hub status offline, server closed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn

from .api import create_app
from .auth import Role
from .evidence import default_evidence_dir
from .ingest import Ingest, IngestConfig
from .keys import KeyLookup, key_lookup
from .live import LiveBus
from .retention import RetentionConfig, aprune
from .store import HubStore, open_store

log = logging.getLogger("efence.hub")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: whoever runs the hub owns Ctrl-C (the demo, the CLI)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Hub:
    def __init__(
        self,
        store: HubStore | str | Path,
        *,
        broker: str = "mqtt://127.0.0.1:1883",
        host: str = "127.0.0.1",
        port: int = 8080,
        client_id: str | None = None,
        shared_group: str | None = None,
        keys_dir: str | Path | None = None,
        key_for: KeyLookup | None = None,
        ingest_config: IngestConfig | None = None,
        transfer_check_s: float = 30.0,
        agent_silence_s: float = 120.0,
        log_level: str = "warning",
        evidence_dir: str | Path | None = None,
        retention: RetentionConfig | None = None,
        zones_dir: str | Path | None = None,
    ) -> None:
        self.store: HubStore = store if not isinstance(store, str | Path) else open_store(str(store))
        self.live = LiveBus()
        cfg = ingest_config or IngestConfig.from_url(broker)
        if client_id:
            cfg.client_id = client_id
        elif cfg.client_id == "efence-hub":
            cfg.client_id = f"efence-hub-{secrets.token_hex(3)}" if shared_group else "efence-hub"
        if shared_group:
            cfg.shared_group = shared_group
        self.ingest = Ingest(self.store, cfg, self.live)
        self.host, self.port = host, port
        self.transfer_check_s = transfer_check_s
        self.retention = retention or RetentionConfig()
        self.evidence_dir = (
            Path(evidence_dir) if evidence_dir is not None else default_evidence_dir(self.store)
        )
        self.last_prune: dict[str, Any] | None = None
        self.app = create_app(
            self.store,
            ingest=self.ingest,
            live=self.live,
            key_for=key_for or key_lookup(keys_dir),
            agent_silence_s=agent_silence_s,
            evidence_dir=Path(evidence_dir) if evidence_dir is not None else None,
            **({"zones_dir": Path(zones_dir)} if zones_dir is not None else {}),
        )
        self._server = _QuietServer(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                log_level=log_level,
                timeout_graceful_shutdown=1,
                lifespan="off",
                access_log=False,
            )
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def create_user(self, username: str, password: str, role: str | Role = Role.ADMIN) -> None:
        """Create or reset a user (blocking). `efence demo` creates `admin` this way."""
        self.store.create_user(username, password, role if isinstance(role, Role) else Role.parse(role))

    def issue_token(self, username: str) -> str:
        """A bearer token for an existing user, e.g. for edge agents pulling `/api/records/{zone}`."""
        return self.store.issue_token(username)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Until the HTTP server listens (the broker connection is reported by `/api/health`)."""
        async with asyncio.timeout(timeout):
            while not self._server.started:
                await asyncio.sleep(0.02)

    async def run(self) -> None:
        """Run until cancelled; cancellation shuts the HTTP server and the MQTT session down cleanly."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.ingest.run(), name="hub-ingest")
                tg.create_task(self._serve(), name="hub-http")
                tg.create_task(self._periodic(), name="hub-periodic")
                if self.retention.interval_s > 0:
                    tg.create_task(self._prune_loop(), name="hub-retention")
        finally:
            log.info("hub stopped")

    async def _serve_once(self) -> None:
        try:
            await self._server.serve()
        except SystemExit:  # uvicorn exits the process when it cannot bind; a library must not
            raise RuntimeError(f"HTTP server could not listen on {self.host}:{self.port}") from None

    async def _serve(self) -> None:
        task = asyncio.ensure_future(self._serve_once())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            self._server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 3.0)
            raise
        raise RuntimeError("HTTP server stopped (port in use?)")

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.transfer_check_s)
            try:
                for alarm in await self.store.acall(self.store.check_transfers):
                    self.live.publish({"type": "alarm", "data": alarm})
            except Exception:
                log.exception("transfer check failed")

    async def _prune_loop(self) -> None:
        """Retention every `interval_s` (the first a minute after start, not during start-up's rush)."""
        await asyncio.sleep(min(60.0, self.retention.interval_s))
        while True:
            try:
                report = await aprune(self.store, self.retention, evidence_dir=self.evidence_dir)
                self.last_prune = report.as_dict()
                if report.total:
                    log.info("retention pruned %s", {k: v for k, v in report.counts.items() if v})
            except Exception:
                log.exception("retention prune failed; retrying at the next interval")
            await asyncio.sleep(self.retention.interval_s)


async def run_hub(**kwargs: Any) -> None:
    """Convenience: `await run_hub(store="sqlite:///hub.db", broker=..., port=...)` until cancelled."""
    store = kwargs.pop("store")
    await Hub(store, **kwargs).run()
