"""Explicit plug-in registry: config `type` → driver class.

Drivers register with `@register("weighbridge")`. The built-in driver modules are listed here by name and
imported once by `load_builtin_drivers()`, so the set of drivers is visible in one place (no scanning).
"""

import importlib

from edge_agent.drivers.base import Driver, Emit
from firmware_configs.devices import DeviceBase

BUILTIN_DRIVER_MODULES: tuple[str, ...] = (
    "edge_agent.drivers.io_board",
    "edge_agent.drivers.weighbridge",
    "edge_agent.drivers.rfid",
    "edge_agent.drivers.plate_camera",
    "edge_agent.drivers.container_camera",
    "edge_agent.drivers.led_board",
)

_DRIVERS: dict[str, type[Driver]] = {}


def register(type_key: str):
    """Class decorator: make a driver available for configs with `type: <type_key>`."""

    def wrap(cls: type[Driver]) -> type[Driver]:
        if type_key in _DRIVERS and _DRIVERS[type_key] is not cls:
            raise ValueError(f"two drivers registered for device type {type_key!r}")
        _DRIVERS[type_key] = cls
        return cls

    return wrap


def load_builtin_drivers() -> dict[str, type[Driver]]:
    for name in BUILTIN_DRIVER_MODULES:
        importlib.import_module(name)
    return dict(_DRIVERS)


def create_driver(config: DeviceBase, emit: Emit, *, lane: str = "") -> Driver:
    """The driver for one device config; an unknown type is a clear error naming the device."""
    drivers = load_builtin_drivers()
    try:
        cls = drivers[config.type]
    except KeyError:
        raise LookupError(
            f"device {config.id!r}: no driver for type {config.type!r}; known: {', '.join(sorted(drivers))}"
        ) from None
    return cls(config, emit, lane=lane)
