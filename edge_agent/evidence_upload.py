"""Upload the lane cameras' evidence images to the hub, in the background, without ever blocking a lane.

`LaneRuntime._keep_evidence` writes every image of a plate/container sighting to
`<evidence_dir>/<YYYYMMDD>/<lane>/<transaction id, "/" → "_">-<device id>-<name>`. This module sends
those files to the hub:

    POST {hub_url}/api/evidence/{transaction_id}/{sha256}/{device id-name}
    Content-Type: image/jpeg | image/png          Authorization: efence.contract.agent_http_auth(...)

* **Idempotent.** The hub keys an image by (transaction id, sha256) and answers 200 for one it already
  has, so re-sending after a crash is harmless. Done files are appended to `<evidence_dir>/.uploaded`
  only after the hub answered, so a crash between the two costs one duplicate upload, never a loss.
* **Retried with back-off** (0.5 s doubling to `backoff_max_s`) while the hub is unreachable or
  answers 5xx/401/403 (a key being rotated); a file the hub refuses for what it *is* (413 too big,
  415 not an image, 422) is logged and journalled as rejected, not retried for ever.
* **Never blocks the lane.** `run()` is its own task; `notify(path)` only appends to an in-memory
  queue; file reads and hashing happen in a worker thread.
* **Nothing missed.** A periodic scan of the folder picks up what was never notified (the agent was
  restarted, the hook is not wired yet); files younger than `settle_s` are left for the next scan as
  they may still be being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from efence.contract import agent_http_auth

log = logging.getLogger("efence.edge.evidence")

JOURNAL = ".uploaded"
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
PERMANENT = {400, 404, 413, 415, 422}  # the hub will never take this file: do not retry
# what follows the lane id in a transaction id (gate_controller.lane: "<lane_id>-%Y%m%dT%H%M%S-<seq>")
_TX_TAIL = re.compile(r"^(\d{8}T\d{6}-(?:\d{6}|reset))-(.+)$")
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class EvidenceFile:
    """One image on disk and what the hub needs to know about it."""

    path: Path
    rel: str  # relative to evidence_dir, the journal key
    transaction_id: str
    name: str  # "<device id>-<image name>"
    content_type: str


class EvidenceUploader:
    """Background uploader of one agent's evidence folder. `await run()` until cancelled."""

    def __init__(
        self,
        agent_id: str,
        key: bytes,
        hub_url: str,
        evidence_dir: Path,
        *,
        scan_interval_s: float = 30.0,
        settle_s: float = 2.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.key = key
        self.hub_url = hub_url.rstrip("/")
        self.evidence_dir = Path(evidence_dir)
        self.scan_interval_s = scan_interval_s
        self.settle_s = settle_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self._client = client
        self._stem_prefix = agent_id.replace("/", "_") + "_"
        self._done: set[str] = set()  # rel paths uploaded or rejected (journalled)
        self._pending: dict[Path, None] = {}  # insertion-ordered set of files to send
        self._wake = asyncio.Event()
        self._journal_loaded = False
        self.uploaded = 0  # images the hub stored (201) or already had (200)
        self.rejected = 0
        self.failures = 0  # attempts that will be retried

    # ------------------------------------------------------------------ API for the lane runtime
    def notify(self, path: Path) -> None:
        """A new evidence file was written (complete). Cheap and synchronous: safe on the lane's path."""
        self._pending[Path(path)] = None
        self._wake.set()

    @property
    def backlog(self) -> int:
        """Files known and not yet sent (for status/metrics)."""
        return len(self._pending)

    # ------------------------------------------------------------------ the task
    async def run(self) -> None:
        try:
            await asyncio.to_thread(self._load_journal)
        except OSError as exc:  # unreadable journal: re-uploads are harmless, a dead task is not
            log.warning(
                "evidence journal in %s unreadable (%s); the hub dedupes re-uploads", self.evidence_dir, exc
            )
        owns_client = self._client is None
        client = self._client or httpx.AsyncClient(timeout=self.timeout_s)
        backoff = 0.5
        next_scan = 0.0
        try:
            while True:
                if time.monotonic() >= next_scan:
                    try:
                        for path in await asyncio.to_thread(self._scan):
                            self._pending.setdefault(path, None)
                    except OSError as exc:  # an unreadable folder must not end the agent's task group
                        log.warning("evidence scan of %s failed: %s", self.evidence_dir, exc)
                    next_scan = time.monotonic() + self.scan_interval_s
                while self._pending:
                    path = next(iter(self._pending))
                    try:
                        done = await self._send(client, path)
                    except Exception as exc:  # disk full for the journal, unreadable file …: retry later
                        log.warning("evidence upload of %s failed: %s; will retry", path, exc)
                        done = False
                    if done:
                        self._pending.pop(path, None)
                        backoff = 0.5
                        continue
                    # hub unreachable or unwilling for now: wait, then try again — this file last, so one
                    # file that cannot be read never holds up the others
                    self._pending.pop(path, None)
                    self._pending[path] = None
                    self.failures += 1
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    if time.monotonic() >= next_scan:
                        break
                self._wake.clear()
                if not self._pending:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, next_scan - time.monotonic())):
                            await self._wake.wait()
        finally:
            if owns_client:
                await client.aclose()

    # ------------------------------------------------------------------ internals
    def _load_journal(self) -> None:
        if self._journal_loaded:
            return
        self._journal_loaded = True
        journal = self.evidence_dir / JOURNAL
        with contextlib.suppress(FileNotFoundError):
            for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
                rel = line.split("\t", 1)[0]
                if rel:
                    self._done.add(rel)

    def _journal(self, rel: str, sha256: str, outcome: str) -> None:
        self._done.add(rel)
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        with (self.evidence_dir / JOURNAL).open("a", encoding="utf-8") as f:
            f.write(f"{rel}\t{sha256}\t{outcome}\n")

    def _scan(self) -> list[Path]:
        """Evidence files not yet journalled and old enough to be complete, oldest day first."""
        if not self.evidence_dir.is_dir():
            return []
        cutoff = time.time() - self.settle_s
        out = []
        for path in sorted(self.evidence_dir.glob("*/*/*")):
            if path.name.startswith(".") or not path.is_file():
                continue
            rel = path.relative_to(self.evidence_dir).as_posix()
            if rel in self._done:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime <= cutoff:
                    out.append(path)
        return out

    def describe(self, path: Path) -> EvidenceFile | None:
        """Recover the transaction id from `<day>/<lane>/<agent_lane-ts-seq>-<device>-<name>`; None when
        the file is not a transaction's evidence (e.g. an "untracked-…" sighting with no vehicle)."""
        try:
            rel_path = path.relative_to(self.evidence_dir)
        except ValueError:
            return None
        if len(rel_path.parts) != 3:
            return None
        _day, lane, filename = rel_path.parts
        ctype = CONTENT_TYPES.get(path.suffix.lower())
        prefix = f"{self._stem_prefix}{lane}-"
        if ctype is None or not filename.startswith(prefix):
            return None
        m = _TX_TAIL.match(filename[len(prefix) :])
        if not m:
            return None
        name = _NAME_OK.sub("_", m.group(2))[:128]
        return EvidenceFile(
            path=path,
            rel=rel_path.as_posix(),
            transaction_id=f"{self.agent_id}/{lane}-{m.group(1)}",
            name=name,
            content_type=ctype,
        )

    async def _send(self, client: httpx.AsyncClient, path: Path) -> bool:
        """True when the file is dealt with (stored, already there, or refused for good)."""
        info = self.describe(path)
        rel = (
            path.relative_to(self.evidence_dir).as_posix()
            if path.is_relative_to(self.evidence_dir)
            else str(path)
        )
        if rel in self._done:
            return True
        if info is None:
            log.info("evidence %s is not linked to a transaction; not uploaded", rel)
            await asyncio.to_thread(self._journal, rel, "-", "skipped")
            return True
        try:
            body = await asyncio.to_thread(info.path.read_bytes)
        except FileNotFoundError:  # cleaned up before we got to it
            return True
        sha = hashlib.sha256(body).hexdigest()
        url_path = f"/api/evidence/{info.transaction_id}/{sha}/{info.name}"
        headers = {
            "Authorization": agent_http_auth(self.agent_id, self.key, "POST", url_path),
            "Content-Type": info.content_type,
        }
        try:
            r = await client.post(self.hub_url + quote(url_path), content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("evidence upload of %s to %s failed (%s); will retry", rel, self.hub_url, exc)
            return False
        if r.status_code in (200, 201):
            await asyncio.to_thread(self._journal, info.rel, sha, "stored")
            self.uploaded += 1
            return True
        if r.status_code in PERMANENT:
            log.error("hub refused evidence %s: %s %s", rel, r.status_code, r.text[:200])
            await asyncio.to_thread(self._journal, info.rel, sha, f"rejected {r.status_code}")
            self.rejected += 1
            return True
        log.warning("evidence upload of %s answered %s %s; will retry", rel, r.status_code, r.text[:200])
        return False
