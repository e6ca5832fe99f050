"""Agent-side half of config push (issue 8): a config from the hub is staged, validated, applied,
and rolled back automatically if the agent cannot reconnect with it; the same content is never
applied twice, and content that was rolled back is not re-applied automatically.

Pure file logic, no MQTT and no asyncio, so it can be tested to the byte and wired in small steps:

    slot = ConfigSlot(data_dir / "config", zone_id, checkpoint_id)
    slot.on_start()                  # at agent start, before loading active.yaml: rolls back a
                                     # pending config whose deadline passed or that crash-loops
    ... run the agent from slot.active ...
    slot.confirm()                   # once the uplink is connected and the hub is online
    slot.check_deadline()            # every few seconds; "rolled_back" → exit, systemd restarts
    slot.offer(yaml_text, version)   # a config pushed by the hub; "applied" → restart to use it

Files under the slot directory: `active.yaml` (what the agent runs), `previous.yaml` (what it ran
before the last apply), `staged.yaml` (transient), `state.json` (versions, hashes, the pending apply,
rejected hashes). Every write is atomic (temp file, fsync, rename), so a power cut at any point
leaves either the old or the new state.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from firmware_configs.loader import validate_text

Outcome = Literal[
    "applied", "unchanged", "invalid", "rejected", "confirmed", "rolled_back", "nothing_pending"
]


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class Pending:
    version: str
    sha256: str
    deadline: float  # epoch seconds: confirm before this or roll back
    previous_version: str
    previous_sha256: str
    starts: int = 0  # agent starts since the apply (a crash loop rolls back too)
    within_s: float = 0.0  # the confirmation window this push was given


@dataclass
class SlotState:
    running_version: str = ""
    running_sha256: str = ""
    pending: Pending | None = None
    rejected: list[str] = field(default_factory=list)  # hashes rolled back: not re-applied automatically
    last_outcome: str = ""
    last_detail: str = ""
    last_version: str = ""  # the version the last outcome is about
    last_ref: str = ""  # the hub's id of the push the last outcome answers
    last_errors: list[str] = field(default_factory=list)  # validation problems, one per line
    seed_sha256: str = ""  # hash of the local config file last installed with `install_initial`


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    detail: str = ""
    restart: bool = False  # the agent must restart to run `active.yaml`
    errors: tuple[str, ...] = ()
    version: str = ""


class ConfigSlot:
    def __init__(
        self,
        directory: Path,
        zone_id: str,
        checkpoint_id: str,
        *,
        confirm_within_s: float = 120.0,
        max_unconfirmed_starts: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.zone_id, self.checkpoint_id = zone_id, checkpoint_id
        self.confirm_within_s = confirm_within_s
        self.max_unconfirmed_starts = max_unconfirmed_starts
        self.clock = clock
        self.active = self.dir / "active.yaml"
        self.previous = self.dir / "previous.yaml"
        self.staged = self.dir / "staged.yaml"
        self._state_path = self.dir / "state.json"

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> SlotState:
        if not self._state_path.exists():
            return SlotState()
        raw = json.loads(self._state_path.read_text())
        pending = Pending(**raw["pending"]) if raw.get("pending") else None
        return SlotState(**{**raw, "pending": pending})

    def _save(self, st: SlotState) -> None:
        _atomic_write(self._state_path, json.dumps(asdict(st), indent=1).encode())

    def install_initial(self, yaml_text: str, version: str) -> None:
        """First installation, or a local file edited by hand (no hub involved): run this config.

        Drops a pending push and forgets rolled-back ones: the person at the box decided.
        """
        problems = self._check(yaml_text)
        if problems:
            raise ValueError("; ".join(problems))
        _atomic_write(self.active, yaml_text.encode())
        digest = sha256(yaml_text)
        self._save(SlotState(running_version=version, running_sha256=digest, seed_sha256=digest))

    def running_version(self) -> str:
        """What the agent reports as `config_version` (the pending one while it is being tried)."""
        st = self.state
        return st.pending.version if st.pending else st.running_version

    # ------------------------------------------------------------------ the push
    def _check(self, yaml_text: str) -> list[str]:
        zone, issues = validate_text(yaml_text, file="pushed config")
        problems = [str(i) for i in issues]
        if zone is not None:
            if zone.id != self.zone_id:
                problems.append(f"config is for zone {zone.id!r}, this agent is in {self.zone_id!r}")
            elif self.checkpoint_id not in {c.id for c in zone.checkpoints}:
                problems.append(f"config has no checkpoint {self.checkpoint_id!r}")
        return problems

    def offer(
        self, yaml_text: str, version: str, *, confirm_within_s: float | None = None, ref: str = ""
    ) -> Result:
        """Stage, validate and apply a config from the hub (atomic; the old one is kept to roll back).

        `confirm_within_s` overrides the slot's deadline for this push; `ref` (the hub's offer id) is
        kept with the outcome so a report can say which push it answers.
        """
        st = self.state
        st.last_ref, st.last_version, st.last_errors = ref, version, []
        digest = sha256(yaml_text)
        if digest == st.running_sha256 or (st.pending and digest == st.pending.sha256):
            return self._done(st, Result("unchanged", f"config {version} is already running"))
        if digest in st.rejected:
            return self._done(
                st, Result("rejected", f"config {version} was rolled back before; not re-applied")
            )
        if st.pending:
            return self._done(st, Result("rejected", f"config {st.pending.version} is still being tried"))
        _atomic_write(self.staged, yaml_text.encode())
        problems = self._check(yaml_text)
        if problems:
            self.staged.unlink(missing_ok=True)
            st.last_errors = problems[:100]
            return self._done(st, Result("invalid", "; ".join(problems)[:2000], errors=tuple(problems)))
        if self.active.exists():
            _atomic_write(self.previous, self.active.read_bytes())
        st.pending = Pending(
            version=version,
            sha256=digest,
            deadline=self.clock() + (confirm_within_s or self.confirm_within_s),
            within_s=confirm_within_s or self.confirm_within_s,
            previous_version=st.running_version,
            previous_sha256=st.running_sha256,
        )
        self._save(st)  # first the intent, then the switch: a crash in between rolls back cleanly
        os.replace(self.staged, self.active)
        return self._done(st, Result("applied", f"config {version} applied; restart to run it", restart=True))

    def on_start(self) -> Result:
        """At agent start: count the start of a pending config; roll back if it is overdue or crash-loops."""
        st = self.state
        if not st.pending:
            return Result("nothing_pending")
        if sha256(self.active.read_bytes()) != st.pending.sha256:  # crashed before the switch
            return self._rollback(st, "the apply was interrupted before the switch")
        st.pending.starts += 1
        if st.pending.starts > self.max_unconfirmed_starts:
            return self._rollback(
                st, f"the agent restarted {st.pending.starts - 1} times without reconnecting"
            )
        if self.clock() > st.pending.deadline:
            return self._rollback(st, "not confirmed before the deadline")
        self._save(st)
        return Result("nothing_pending", f"trying config {st.pending.version}")

    def confirm(self) -> Result:
        """The agent reconnected to the hub running the pending config: it becomes the running one."""
        st = self.state
        if not st.pending:
            return Result("nothing_pending")
        version = st.pending.version
        st.running_version, st.running_sha256, st.pending = version, st.pending.sha256, None
        st.last_version, st.last_errors = version, []
        return self._done(st, Result("confirmed", f"config {version} confirmed"))

    def check_deadline(self) -> Result:
        st = self.state
        if st.pending and self.clock() > st.pending.deadline:
            window = st.pending.within_s or self.confirm_within_s
            return self._rollback(st, f"could not reconnect to the hub within {window:.0f} s")
        return Result("nothing_pending")

    def _rollback(self, st: SlotState, why: str) -> Result:
        assert st.pending is not None
        bad = st.pending
        if self.previous.exists():
            _atomic_write(self.active, self.previous.read_bytes())
        st.rejected = [*st.rejected[-49:], bad.sha256]
        st.running_version, st.running_sha256, st.pending = bad.previous_version, bad.previous_sha256, None
        st.last_version, st.last_errors = bad.version, []
        return self._done(
            st,
            Result("rolled_back", f"config {bad.version} rolled back to {bad.previous_version}: {why}", True),
        )

    def _done(self, st: SlotState, res: Result) -> Result:
        st.last_outcome, st.last_detail = res.outcome, res.detail
        self._save(st)
        return Result(res.outcome, res.detail, res.restart, res.errors, st.last_version)
