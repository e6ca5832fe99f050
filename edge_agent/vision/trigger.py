"""Arming-loop trigger -> a few frames -> plate/container reads off the event loop -> consensus."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from edge_agent.vision.consensus import ConsensusResult, PlateConsensus
from edge_agent.vision.frames import Frame, capture_burst

#: One OCR worker per process: on a 2-core edge, parallel OCR jobs only slow each other down.
_OCR_EXECUTOR: ThreadPoolExecutor | None = None


def ocr_executor() -> ThreadPoolExecutor:
    global _OCR_EXECUTOR
    if _OCR_EXECUTOR is None:
        _OCR_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr")
    return _OCR_EXECUTOR


class _Reader(Protocol):
    def read(self, image: Any, *, keep_frame: bool = True) -> Any: ...


class _HasBuffer(Protocol):
    buffer: Any


async def read_on_trigger(
    source: _HasBuffer,
    reader: _Reader,
    *,
    frames: int = 3,
    min_agree: int = 2,
    timeout: float = 2.0,
    triggered_at: float | None = None,
    executor: ThreadPoolExecutor | None = None,
) -> ConsensusResult:
    """Read the vehicle that just armed the loop: ``frames`` frames, consensus of ``min_agree``.

    OCR runs in a single-worker executor, so the lane's event loop keeps serving loops, relays
    and the uplink while plates are read. Too few frames within ``timeout`` -> rejection.
    """
    start = time.monotonic() if triggered_at is None else triggered_at
    burst: list[Frame] = await capture_burst(source, count=frames, after=start, timeout=timeout)
    consensus = PlateConsensus(min_agree=min(min_agree, max(1, frames)))
    loop = asyncio.get_running_loop()
    pool = executor or ocr_executor()
    for frame in burst:
        read = await loop.run_in_executor(pool, lambda img=frame.image: reader.read(img))
        consensus.add(read)
    if not burst:
        return ConsensusResult(None, 0, 0, 0.0, "no frames from camera within timeout")
    return consensus.result()
