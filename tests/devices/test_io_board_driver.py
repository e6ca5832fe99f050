"""The IO board driver against the pymodbus board simulator over a real TCP socket.

Each test builds one simulated board (Modbus/TCP or RTU-over-TCP) and one driver polling it fast, then
drives the physical scene or injects a fault and checks what the driver emits and which relays moved.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient

from edge_agent.drivers import registry
from edge_agent.drivers.base import CommandNotSupported, DeviceCommand
from edge_agent.drivers.io_board import BarrierPulse, CommandRefused, IoBoardDriver, SetLight
from edge_agent.observations import ArmPosition, LoopState
from simulators.io_board import IoBoardSimulator, standalone_config
from simulators.scene import LaneScene, VehicleSpec


@dataclass
class Rig:
    sim: IoBoardSimulator
    driver: IoBoardDriver
    events: list = field(default_factory=list)
    task: asyncio.Task | None = None

    def loops(self, name: str) -> list[LoopState]:
        return [e for e in self.events if isinstance(e, LoopState) and e.loop == name]

    def arms(self) -> list[ArmPosition]:
        return [e for e in self.events if isinstance(e, ArmPosition)]

    async def until(self, predicate, timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s; events: {self.events[-8:]}")
            await asyncio.sleep(0.01)


@pytest.fixture
async def rig_factory() -> AsyncIterator:
    rigs: list[Rig] = []

    async def make(
        output_mode: str = "coils", framer: str = "socket", *, scene: LaneScene | None = None, **update
    ) -> Rig:
        config = standalone_config(output_mode=output_mode, framer=framer)
        scene = scene or LaneScene()
        scene.barrier.travel_s = 0.3
        sim = IoBoardSimulator(config, scene)
        port = await sim.start()
        settings = {"poll_interval_ms": 20, "debounce_ms": 60, "pulse_ms": 150, "stale_after_ms": 300}
        settings.update(update)
        config = config.model_copy(update={"link": config.link.model_copy(update={"port": port}), **settings})
        rig = Rig(sim, None)  # type: ignore[arg-type]
        rig.driver = IoBoardDriver(config, rig.events.append)
        rig.task = asyncio.create_task(rig.driver.run())
        rigs.append(rig)
        await rig.until(lambda: rig.driver.counters["polls"] > 0)
        return rig

    yield make
    for rig in rigs:
        rig.task.cancel()
        await asyncio.gather(rig.task, return_exceptions=True)
        await rig.sim.stop()


async def test_initial_state_emitted(rig_factory):
    rig = await rig_factory()
    await rig.until(lambda: len(rig.arms()) == 1)
    assert [e.occupied for e in rig.events if isinstance(e, LoopState)] == [False, False, False]
    assert rig.arms()[0].arm_down is True and rig.arms()[0].arm_up is False


@pytest.mark.parametrize("framer", ["socket", "rtu"])
async def test_loop_debounce_ignores_glitch_and_accepts_held_level(rig_factory, framer):
    rig = await rig_factory(framer=framer, debounce_ms=100)
    await rig.until(lambda: rig.loops("arming"))
    # a 30 ms glitch (shorter than the 100 ms debounce) never becomes a level
    rig.sim.faults.stuck_loops["arming"] = True
    await asyncio.sleep(0.03)
    del rig.sim.faults.stuck_loops["arming"]
    await asyncio.sleep(0.3)
    assert [e.occupied for e in rig.loops("arming")] == [False]
    # a held level does, but not before the debounce time
    t0 = time.monotonic()
    rig.sim.faults.stuck_loops["arming"] = True
    await rig.until(lambda: len(rig.loops("arming")) == 2)
    assert rig.loops("arming")[-1].occupied is True
    assert rig.loops("arming")[-1].at - t0 >= 0.1


async def test_open_pulse_is_released_and_arm_rises(rig_factory):
    rig = await rig_factory()
    open_ch = rig.driver.config.outputs.barrier_open
    await rig.driver.command(BarrierPulse("open"))
    assert rig.sim.relays[open_ch] is False  # never latched
    assert [on for _, ch, on in rig.sim.relay_log if ch == open_ch] == [True, False]
    assert (
        0.13 <= rig.sim.longest_on_s(open_ch) <= 0.9
    )  # 150 ms pulse (upper bound loose for a loaded CI box)
    # the coil reads back off over the wire, too
    client = AsyncModbusTcpClient("127.0.0.1", port=rig.sim.port, framer=FramerType.SOCKET)
    await client.connect()
    try:
        assert (await client.read_coils(0, count=4, device_id=1)).bits[:4] == [False] * 4
    finally:
        client.close()
    await rig.until(lambda: any(a.arm_up for a in rig.arms()))
    travelling = [a for a in rig.arms() if a.arm_up is False and a.arm_down is False]
    assert travelling, "arm travel (both switches open) is reported"


async def test_cancelled_pulse_still_releases_relay(rig_factory):
    rig = await rig_factory(pulse_ms=1000)
    open_ch = rig.driver.config.outputs.barrier_open
    task = asyncio.create_task(rig.driver.command(BarrierPulse("open")))
    await rig.until(lambda: rig.sim.relays[open_ch])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await rig.until(lambda: not rig.sim.relays[open_ch], timeout=1.0)
    assert rig.sim.longest_on_s(open_ch) < 0.8


async def test_command_register_board_momentary(rig_factory):
    rig = await rig_factory("command_register")
    open_ch = rig.driver.config.outputs.barrier_open
    await rig.driver.command(BarrierPulse("open"))
    assert [on for _, ch, on in rig.sim.relay_log if ch == open_ch] == [True, False]  # board released it
    assert 0.9 <= rig.sim.longest_on_s(open_ch) <= 1.6
    await rig.until(lambda: any(a.arm_up for a in rig.arms()))


async def test_command_register_board_open_close_and_light(rig_factory):
    rig = await rig_factory("command_register", register_pulse="open_close")
    outs = rig.driver.config.outputs
    await rig.driver.command(BarrierPulse("open"))
    assert rig.sim.relays[outs.barrier_open] is False
    assert 0.13 <= rig.sim.longest_on_s(outs.barrier_open) <= 0.9
    await rig.driver.command(SetLight("green"))
    assert (rig.sim.relays[outs.light_green], rig.sim.relays[outs.light_red]) == (True, False)
    await rig.driver.command(SetLight("red"))
    assert (rig.sim.relays[outs.light_green], rig.sim.relays[outs.light_red]) == (False, True)
    await rig.driver.command(SetLight("off"))
    assert (rig.sim.relays[outs.light_green], rig.sim.relays[outs.light_red]) == (False, False)


async def test_close_refused_while_safety_loop_occupied(rig_factory):
    rig = await rig_factory()
    close_ch = rig.driver.config.outputs.barrier_close
    rig.sim.faults.stuck_loops["safety"] = True
    await rig.until(lambda: rig.loops("safety")[-1].occupied is True)
    with pytest.raises(CommandRefused, match="occupied"):
        await rig.driver.command(BarrierPulse("close"))
    assert not any(ch == close_ch for _, ch, _ in rig.sim.relay_log)
    # the re-check also catches a vehicle that arrived after the last debounced level
    del rig.sim.faults.stuck_loops["safety"]
    await rig.until(lambda: rig.loops("safety")[-1].occupied is False)
    rig.driver.loops["safety"].hold_s = 10.0  # the debounced level cannot follow now; only the fresh read can
    rig.sim.faults.stuck_loops["safety"] = True
    with pytest.raises(CommandRefused):
        await rig.driver.command(BarrierPulse("close"))
    assert not any(ch == close_ch for _, ch, _ in rig.sim.relay_log)
    assert rig.driver.counters["refused"] == 2
    # and a free loop lets the close through, as a pulse
    del rig.sim.faults.stuck_loops["safety"]
    rig.driver.loops["safety"].hold_s = 0.06
    await asyncio.sleep(0.1)
    await rig.driver.command(BarrierPulse("close"))
    assert [on for _, ch, on in rig.sim.relay_log if ch == close_ch] == [True, False]


async def test_silent_board_makes_inputs_unknown_and_refuses_close(rig_factory):
    rig = await rig_factory()
    await rig.until(lambda: rig.loops("safety"))
    rig.sim.faults.silent = True
    t0 = time.monotonic()
    await rig.until(lambda: rig.loops("safety")[-1].occupied is None, timeout=3)
    assert time.monotonic() - t0 >= 0.25  # stale_after_ms (300) counted from the last good poll
    assert {e.loop for e in rig.events[-4:] if isinstance(e, LoopState)} == {"arming", "safety", "exit"}
    assert rig.arms()[-1] == ArmPosition("io", None, None, rig.arms()[-1].at)
    with pytest.raises(CommandRefused):
        await rig.driver.command(BarrierPulse("close"))
    rig.sim.faults.silent = False
    await rig.until(lambda: rig.loops("safety")[-1].occupied is False, timeout=5)
    assert rig.driver.health.observed == "up"


async def test_relay_fault_arm_never_rises(rig_factory):
    rig = await rig_factory()
    await rig.until(lambda: rig.arms())
    rig.sim.faults.relay_dead = True
    await rig.driver.command(BarrierPulse("open"))
    assert [on for _, ch, on in rig.sim.relay_log if ch == 0] == [True, False]  # the relay did click
    await asyncio.sleep(rig.sim.scene.barrier.travel_s + 0.5)
    assert all(
        a.arm_up is False and a.arm_down is True for a in rig.arms()
    )  # unchanged: the controller faults


async def test_reconnect_after_simulator_restart(rig_factory):
    rig = await rig_factory()
    await rig.until(lambda: rig.loops("safety"))
    port = rig.sim.port
    await rig.sim.stop()
    await rig.until(lambda: rig.loops("safety")[-1].occupied is None)
    await rig.until(lambda: rig.driver.health.observed == "down", timeout=5)
    with pytest.raises(CommandRefused):
        await rig.driver.command(BarrierPulse("open"))
    # the board comes back with a relay latched (a pulse cut off by the outage): the driver releases it
    rig.sim.relays[rig.driver.config.outputs.barrier_open] = True
    await rig.sim.start(port=port)
    await rig.until(lambda: rig.driver.health.observed == "up", timeout=8)
    await rig.until(lambda: rig.loops("safety")[-1].occupied is False)
    assert rig.sim.relays[rig.driver.config.outputs.barrier_open] is False
    assert rig.driver.health.counters["reconnects"] >= 1


async def test_vehicle_crossing_the_lane(rig_factory):
    scene = LaneScene(drive_on_s=0.2, cross_s=0.3, leave_s=0.2)
    rig = await rig_factory(scene=scene)
    scene.arrive(VehicleSpec(plate="沪A12345"))
    await rig.until(lambda: any(e.occupied for e in rig.loops("arming")))
    await rig.driver.command(BarrierPulse("open"))
    await rig.until(lambda: any(e.occupied for e in rig.loops("exit")), timeout=4)
    await rig.until(
        lambda: rig.loops("exit")[-1].occupied is False and rig.loops("safety")[-1].occupied is False
    )
    await rig.driver.command(BarrierPulse("close"))
    await rig.until(lambda: rig.arms()[-1].arm_down is True and scene.passed == 1)
    sequence = [(e.loop, e.occupied) for e in rig.events if isinstance(e, LoopState) and e.occupied]
    assert sequence == [("arming", True), ("safety", True), ("exit", True)]


async def test_unknown_command_and_registry(rig_factory):
    rig = await rig_factory()

    class Beep(DeviceCommand):
        pass

    with pytest.raises(CommandNotSupported):
        await rig.driver.command(Beep())
    assert registry._DRIVERS["io_board"] is IoBoardDriver  # registered under its config type


async def test_standalone_simulator_runs_its_own_trucks():
    config = standalone_config(output_mode="command_register", framer="rtu")
    sim = IoBoardSimulator(config)  # no scene: its own, with a truck every 20 s (the first after 1 s)
    port = await sim.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=port, framer=FramerType.RTU, retries=0)
    await client.connect()
    try:
        deadline = time.monotonic() + 4
        while not (await client.read_discrete_inputs(0, count=5, device_id=1)).bits[0]:
            assert time.monotonic() < deadline, "no truck on the arming loop"
            await asyncio.sleep(0.05)
        assert sim.scene.vehicle is not None and sim.scene.vehicle.containers[0] is not None
        # an R421A08-style board answers FC03 with relay states and refuses coil writes
        assert (await client.write_register(1, 0x0100, device_id=1)).isError() is False
        assert (await client.read_holding_registers(0, count=5, device_id=1)).registers[1] == 1
        assert (await client.write_coil(0, True, device_id=1)).isError()
    finally:
        client.close()
        await sim.stop()


async def test_rtu_driver_over_a_real_pseudo_terminal():
    from firmware_configs.devices import ModbusRtuLink, SerialLink

    config = standalone_config()
    sim = IoBoardSimulator(config)
    path = await sim.start_pty()
    assert path.startswith("/dev/pts/")
    link = ModbusRtuLink(kind="rtu", serial=SerialLink(port=path, baudrate=115200))
    config = config.model_copy(update={"link": link, "poll_interval_ms": 20, "pulse_ms": 150})
    rig = Rig(sim, None)  # type: ignore[arg-type]
    rig.driver = IoBoardDriver(config, rig.events.append)
    task = asyncio.create_task(rig.driver.run())
    try:
        await rig.until(lambda: len(rig.arms()) == 1)
        assert [e.occupied for e in rig.events if isinstance(e, LoopState)] == [False, False, False]
        await rig.driver.command(BarrierPulse("open"))
        assert [on for _, ch, on in sim.relay_log if ch == config.outputs.barrier_open] == [True, False]
        sim.faults.stuck_loops["safety"] = True
        await rig.until(lambda: rig.loops("safety")[-1].occupied is True)
        with pytest.raises(CommandRefused):
            await rig.driver.command(BarrierPulse("close"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()
