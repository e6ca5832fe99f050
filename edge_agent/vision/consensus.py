"""Multi-frame consensus for plate reads (pure Python: no OpenCV needed).

One frame can be blurred, half-occluded or caught mid-glare; a gate should act on what several
frames agree on. Rejected frames abstain; a second text that is itself read confidently in
enough frames is a conflict and sends the vehicle to manual review rather than picking one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol


class _Read(Protocol):
    text: str | None
    confidence: float


@dataclass(frozen=True)
class ConsensusResult:
    """Agreed text, or ``text is None`` with the reason (manual review)."""

    text: str | None
    frames: int
    agreeing: int
    confidence: float
    reason: str
    #: The best single-frame read of the agreed text (its crop and frame are the evidence).
    evidence: Any = None
    votes: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.text is not None


class PlateConsensus:
    """Accumulates per-frame reads of one vehicle and decides once enough agree.

    ``min_agree`` accepted frames must read the same text, holding at least ``min_share`` of
    the accepted frames; a rival text read in ``min_agree`` frames as well is a conflict.
    For a camera that pushes a single snapshot per vehicle, use ``min_agree=1``.
    """

    def __init__(self, min_agree: int = 2, min_share: float = 2 / 3, max_frames: int = 10) -> None:
        if min_agree < 1:
            raise ValueError("min_agree must be >= 1")
        self.min_agree = min_agree
        self.min_share = min_share
        self.max_frames = max_frames
        self._reads: list[_Read] = []

    def add(self, read: _Read) -> None:
        """Add one frame's read (accepted or rejected); the oldest is dropped beyond max_frames."""
        self._reads.append(read)
        if len(self._reads) > self.max_frames:
            self._reads.pop(0)

    def reset(self) -> None:
        self._reads.clear()

    def result(self) -> ConsensusResult:
        n = len(self._reads)
        counts: dict[str, int] = defaultdict(int)
        best: dict[str, _Read] = {}
        for r in self._reads:
            if r.text is None:
                continue
            counts[r.text] += 1
            if r.text not in best or r.confidence > best[r.text].confidence:
                best[r.text] = r
        votes = dict(counts)
        if not counts:
            return ConsensusResult(None, n, 0, 0.0, "no frame read a plate", votes=votes)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -best[kv[0]].confidence))
        text, agree = ranked[0]
        accepted = sum(counts.values())
        ev = best[text]
        if len(ranked) > 1 and ranked[1][1] >= self.min_agree:
            return ConsensusResult(None, n, agree, 0.0, f"conflict: {text} vs {ranked[1][0]}", ev, votes)
        if agree < self.min_agree:
            return ConsensusResult(
                None, n, agree, ev.confidence, f"only {agree} of {self.min_agree} frames agree", ev, votes
            )
        if agree / accepted < self.min_share:
            return ConsensusResult(
                None, n, agree, ev.confidence, f"{agree}/{accepted} frames agree", ev, votes
            )
        return ConsensusResult(text, n, agree, ev.confidence, "ok", ev, votes)
