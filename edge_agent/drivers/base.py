"""The one driver interface, and the supervised reconnect loop every driver runs inside.

A driver is constructed from its typed config, emits `edge_agent.observations` through a callback, and runs
until cancelled. Connection loss is not an error that escapes: `supervise` reconnects with exponential
back-off and keeps the two-axis health honest.
"""

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from edge_agent.drivers.health import DeviceHealth
from edge_agent.observations import Observation
from firmware_configs.devices import DeviceBase

Emit = Callable[[Observation], None]


class DeviceCommand:
    """Marker base for commands a driver accepts (barrier pulse, light, LED text)."""


class CommandNotSupported(Exception):
    pass


class Driver(ABC):
    """Base of every device driver. Subclasses register with `@register("<type>")`."""

    config_type: ClassVar[type[DeviceBase]]

    def __init__(self, config: DeviceBase, emit: Emit, *, lane: str = "", log: logging.Logger | None = None):
        self.config = config
        self.emit = emit
        self.lane = lane
        self.log = log or logging.getLogger(
            f"efence.device.{lane}.{config.id}" if lane else f"efence.device.{config.id}"
        )
        self.health = DeviceHealth(
            config.id, failures_before_down=config.failures_before_down, enabled=config.enabled
        )
        self.stopping = (
            False  # set by the agent at shutdown; `supervise` then ends even if a cancel was swallowed
        )

    @abstractmethod
    async def run(self) -> None:
        """Run until cancelled: connect, read, emit observations; reconnect on loss (use `supervise`)."""

    async def command(self, command: DeviceCommand) -> None:
        """Carry out a command; drivers of devices that take none refuse it."""
        raise CommandNotSupported(f"{self.config.type} {self.config.id} takes no commands ({command!r})")

    def status(self) -> dict[str, Any]:
        return {"type": self.config.type, **self.health.snapshot()}


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed (some client `connect()`s catch CancelledError).

    Without this a driver whose lane is shutting down would carry on reconnecting, and the TaskGroup
    waiting for it would never finish: Ctrl-C would not stop the agent.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def backoff_delays(max_s: float, *, first_s: float = 0.2, factor: float = 2.0, jitter: float = 0.2):
    """Exponential back-off with jitter, capped: 0.2, 0.4, 0.8, … max_s, max_s, …"""
    delay = first_s
    while True:
        yield min(max_s, delay) * (1 + random.uniform(-jitter, jitter))
        delay *= factor


async def supervise(
    connect_and_serve: Callable[[], Awaitable[None]],
    health: DeviceHealth,
    log: logging.Logger,
    *,
    max_backoff_s: float,
    on_down: Callable[[], None] | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Run `connect_and_serve` forever, reconnecting with back-off after any failure except cancellation.

    `stopping()` is checked after every failure: some client libraries swallow a cancellation that
    races with a refused connect (asyncio.wait_for on Python 3.11), and a shutting-down agent must not
    be kept alive by a driver that keeps reconnecting.
    """
    delays = backoff_delays(max_backoff_s)
    while True:
        try:
            await connect_and_serve()
            delays = backoff_delays(max_backoff_s)  # a clean return (peer closed): start back-off afresh
            reason = "connection closed by device"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — any device failure must lead to a reconnect, never a dead lane
            reason = f"{type(exc).__name__}: {exc}"
        raise_if_cancelling()
        if stopping():
            raise asyncio.CancelledError
        health.counters["reconnects"] += 1
        if health.failed(reason) and on_down:
            on_down()
        delay = next(delays)
        log.warning("device %s: %s; reconnecting in %.1f s", health.device_id, reason, delay)
        await asyncio.sleep(delay)
