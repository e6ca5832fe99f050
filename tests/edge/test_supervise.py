"""Reconnect supervision, including the shutdown case a client library makes hard."""

import asyncio
import logging

from edge_agent.drivers.base import backoff_delays, supervise
from edge_agent.drivers.health import DeviceHealth

log = logging.getLogger("test")


async def test_failures_reconnect_with_backoff_and_mark_down_after_n():
    health = DeviceHealth("dev", failures_before_down=3)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("refused")

    task = asyncio.create_task(supervise(flaky, health, log, max_backoff_s=0.05))
    await asyncio.sleep(0.6)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert calls >= 4 and health.observed == "down" and "refused" in health.last_error
    health.ok(1.0)
    assert health.observed == "up" and health.consecutive_failures == 0


async def test_a_swallowed_cancellation_still_stops_the_driver():
    """A client whose connect() turns our cancel into a failed connect (as wait_for can on 3.11)."""
    health = DeviceHealth("dev")
    entered = asyncio.Event()

    async def swallowing_connect() -> None:
        entered.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise OSError("connect failed") from None  # the cancellation is lost here

    task = asyncio.create_task(supervise(swallowing_connect, health, log, max_backoff_s=0.05))
    await entered.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()


async def test_stopping_flag_ends_supervision_even_without_cancel():
    stopping = False

    async def fails() -> None:
        raise ConnectionError("gone")

    task = asyncio.create_task(
        supervise(fails, DeviceHealth("dev"), log, max_backoff_s=0.05, stopping=lambda: stopping)
    )
    await asyncio.sleep(0.1)
    stopping = True
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()


def test_backoff_grows_to_the_cap_with_jitter():
    delays = backoff_delays(2.0, first_s=0.2)
    values = [next(delays) for _ in range(8)]
    assert 0.15 < values[0] < 0.25 and all(v <= 2.4 for v in values) and values[-1] > 1.5
