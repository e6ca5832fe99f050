"""Retention: what the hub forgets, when, and what it never forgets.

The store only grows otherwise (events at ~1 k/s fill a disk in weeks). `RetentionConfig` sets an age
per kind of row; `prune()` removes what is older in small batches (each its own short write
transaction, so ingest goes on in between), reports progress, deletes image files no row refers to
any more, and writes one audit entry of what it removed.

Never pruned whatever the ages: ringing (unacknowledged) alarms, open or overdue transfers, events
not yet acknowledged to their agent, unresolved (not closed) transactions and their evidence images,
the audit log (a hash chain: removing entries is what `efence audit verify` exists to detect) and the
records replication log (edges resynchronise from it). DOMAIN.md §5 keeps lane and perimeter video at
least 90 days, so evidence images cannot be set shorter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .evidence import EvidenceFiles
from .store import PRUNE_RULES, HubStore
from .timeutil import iso, now_utc

log = logging.getLogger("efence.hub.retention")

EVIDENCE_MIN_DAYS = 90.0  # DOMAIN.md §5: lane and perimeter video kept ≥ 90 days


class RetentionConfig(BaseModel):
    """Ages (days) after which rows are pruned; the defaults suit a checkpoint hub with a normal disk."""

    model_config = ConfigDict(extra="forbid")

    telemetry_days: float = Field(
        7.0,
        gt=0,
        description="telemetry, lane_state and device_health events (the hub keeps their current state).",
    )
    events_days: float = Field(
        90.0,
        gt=0,
        description="All other raw events (decisions, alarms, barrier moves); transactions keep their own rows.",
    )
    transactions_days: float = Field(
        1095.0, gt=0, description="Closed transactions and arrived transfers (about 3 years of crossings)."
    )
    evidence_days: float = Field(
        365.0,
        ge=EVIDENCE_MIN_DAYS,
        description="Evidence images of closed transactions; DOMAIN.md §5 requires at least 90 days.",
    )
    alarms_days: float = Field(
        365.0, gt=0, description="Acknowledged alarms (ringing ones are never pruned)."
    )
    commands_days: float = Field(
        365.0, gt=0, description="Operator commands sent to the edges and their results."
    )
    event_gaps_days: float = Field(365.0, gt=0, description="Records of event gaps the hub gave up on.")
    interval_s: float = Field(
        3600.0, ge=0, description="How often the running hub prunes (seconds); 0 turns periodic pruning off."
    )
    batch: int = Field(
        2000, ge=1, le=100_000, description="Rows per delete transaction (ingest waits at most one)."
    )

    @model_validator(mode="after")
    def _evidence_within_transactions(self) -> RetentionConfig:
        if self.evidence_days > self.transactions_days:
            raise ValueError(
                f"evidence_days ({self.evidence_days:g}) must not exceed transactions_days "
                f"({self.transactions_days:g}): an image would outlive the transaction it documents"
            )
        return self

    def days_for(self, rule: str) -> float:
        """The age of one `PRUNE_RULES` entry."""
        return {"transfers": self.transactions_days}.get(rule) or float(getattr(self, f"{rule}_days"))

    @classmethod
    def load(cls, path: str | Path) -> RetentionConfig:
        """YAML or JSON file; a `retention:` top-level key is accepted, so it can live in a hub config."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and set(data) == {"retention"}:
            data = data["retention"]
        return cls.model_validate(data)


@dataclass
class PruneReport:
    dry_run: bool
    now: str
    counts: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, str] = field(default_factory=dict)
    files_deleted: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "now": self.now,
            "counts": self.counts,
            "cutoffs": self.cutoffs,
            "files_deleted": self.files_deleted,
            "total": self.total,
        }


Progress = Callable[[str, int, int], None]
"""progress(rule, done, total) after each batch (total is the count when the rule started)."""


class _Plan:
    def __init__(self, config: RetentionConfig, now: datetime | None) -> None:
        self.now = now or now_utc()
        self.cutoffs = {r: self.now - timedelta(days=config.days_for(r)) for r in PRUNE_RULES}


def _unlink(files: EvidenceFiles | None, orphaned: list[tuple[str, str]]) -> int:
    n = 0
    if files is None:
        return n
    for sha, ctype in orphaned:
        try:
            files.path(sha, ctype).unlink(missing_ok=True)
            n += 1
        except (OSError, ValueError, KeyError) as exc:  # a stray file is not worth failing the prune
            log.warning("evidence file %s not deleted: %s", sha, exc)
    return n


def prune(
    store: HubStore,
    config: RetentionConfig,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    evidence_dir: Path | None = None,
    progress: Progress | None = None,
    actor: str = "retention",
) -> PruneReport:
    """Blocking prune (the CLI); the running hub uses `aprune`, which yields the store between batches."""
    plan = _Plan(config, now)
    report = PruneReport(dry_run=dry_run, now=iso(plan.now) or "")
    files = EvidenceFiles(evidence_dir) if evidence_dir is not None else None
    for rule, cutoff in plan.cutoffs.items():
        report.cutoffs[rule] = iso(cutoff) or ""
        total = store.prune_count(rule, cutoff)
        done = 0
        if progress:
            progress(rule, 0, total)
        while not dry_run and done < total:
            batch = store.prune_batch(rule, cutoff, config.batch)
            if not batch.deleted:
                break
            done += batch.deleted
            report.files_deleted += _unlink(files, batch.orphaned_files)
            if progress:
                progress(rule, done, total)
        report.counts[rule] = total if dry_run else done
    _audit(store, report, actor)
    return report


async def aprune(
    store: HubStore,
    config: RetentionConfig,
    *,
    now: datetime | None = None,
    evidence_dir: Path | None = None,
    actor: str = "retention",
) -> PruneReport:
    """`prune` for the running hub: every batch is a separate call on the store's thread."""
    plan = _Plan(config, now)
    report = PruneReport(dry_run=False, now=iso(plan.now) or "")
    files = EvidenceFiles(evidence_dir) if evidence_dir is not None else None
    for rule, cutoff in plan.cutoffs.items():
        report.cutoffs[rule] = iso(cutoff) or ""
        done = 0
        while True:
            batch = await store.acall(store.prune_batch, rule, cutoff, config.batch)
            done += batch.deleted
            report.files_deleted += _unlink(files, batch.orphaned_files)
            if batch.deleted < config.batch:
                break
            await asyncio.sleep(0)  # let ingest's next commit in
        report.counts[rule] = done
    await store.acall(_audit, store, report, actor)
    return report


def _audit(store: HubStore, report: PruneReport, actor: str) -> None:
    """One audit entry per prune that removed something (a dry run or an empty prune changes nothing)."""
    if report.dry_run or not report.total:
        return
    store.audit(actor, "retention.prune", "store", report.as_dict())
