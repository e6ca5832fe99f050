"""Multi-frame plate consensus: agreement, abstention, conflict."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.vision.consensus import PlateConsensus


@dataclass
class R:
    text: str | None
    confidence: float = 0.9


def _run(texts: list[str | None], **kw) -> object:
    c = PlateConsensus(**kw)
    for t in texts:
        c.add(R(t))
    return c.result()


def test_two_agreeing_frames_accept() -> None:
    r = _run(["沪A12345", None, "沪A12345"])
    assert r.text == "沪A12345" and r.agreeing == 2 and r.frames == 3


def test_single_frame_is_not_enough_by_default() -> None:
    r = _run(["沪A12345", None, None])
    assert r.text is None and "only 1" in r.reason


def test_single_snapshot_camera_can_use_min_agree_one() -> None:
    assert _run(["沪A12345"], min_agree=1).text == "沪A12345"


def test_conflict_goes_to_manual_review() -> None:
    r = _run(["沪A12345", "沪A12346", "沪A12345", "沪A12346"])
    assert r.text is None and r.reason.startswith("conflict")


def test_minority_misread_is_outvoted() -> None:
    r = _run(["沪A12345", "沪A12346", "沪A12345", "沪A12345"])
    assert r.text == "沪A12345"


def test_all_rejected() -> None:
    r = _run([None, None])
    assert r.text is None and r.agreeing == 0


def test_window_is_bounded() -> None:
    c = PlateConsensus(max_frames=3)
    for t in ["沪A00001"] * 3 + ["沪A12345"] * 3:
        c.add(R(t))
    assert c.result().text == "沪A12345"
