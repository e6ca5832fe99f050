"""Modbus RTU worked frames of PROTOCOLS.md §4.2, byte for byte.

Two independent checks: the CRC-16/MODBUS of every worked frame is recomputed here from the algorithm
(poly 0xA001 reflected, init 0xFFFF, low byte first), and the frames pymodbus 3.16 really puts on the
wire — client requests and server responses over RTU-over-TCP — are captured with `trace_packet` and
compared with the table. Then the same capture proves which frames our IO board driver sends for a
barrier pulse on a coil board and on an R421A08 command-register board.
"""

import asyncio

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.drivers.io_board import BarrierPulse, IoBoardDriver
from simulators.io_board import IoBoardSimulator, standalone_config

WORKED = {
    "coil0_on": "01 05 00 00 FF 00 8C 3A",
    "coil0_off": "01 05 00 00 00 00 CD CA",
    "coil1_on": "01 05 00 01 FF 00 DD FA",
    "read8_coils": "01 01 00 00 00 08 3D CC",
    "read_coils_resp_0_6": "01 01 01 41 91 B8",
    "read8_di": "01 02 00 00 00 08 79 CC",
    "read_di_resp_0246": "01 02 01 55 61 B7",
    "write8_coils_05": "01 0F 00 00 00 08 01 05 3E 96",
    "write8_coils_resp": "01 0F 00 00 00 08 54 0D",
    "read_hr0": "01 03 00 00 00 01 84 0A",
    "r421_ch1_open": "01 06 00 01 01 00 D9 9A",
    "r421_ch1_close": "01 06 00 01 02 00 D9 6A",
}


def crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(hex_body: str) -> bytes:
    body = bytes.fromhex(hex_body)
    crc = crc16_modbus(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def test_crc_check_value():
    assert crc16_modbus(b"123456789") == 0x4B37


@pytest.mark.parametrize("name", sorted(WORKED))
def test_worked_frame_crc(name):
    frame = bytes.fromhex(WORKED[name])
    assert with_crc(frame[:-2].hex()) == frame


async def _capture_pymodbus_frames() -> list[tuple[bool, bytes]]:
    """Client requests (False) and server responses (True) for the worked operations."""
    frames: list[tuple[bool, bytes]] = []

    def trace(sending: bool, data: bytes) -> bytes:
        frames.append((sending, bytes(data)))
        return data

    device = SimDevice(
        1,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=[True, False] * 8, datatype=DataType.BITS)],
            [SimData(0, count=8, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=8, values=0, datatype=DataType.REGISTERS)],
        ),
    )
    server = ModbusTcpServer(device, framer=FramerType.RTU, address=("127.0.0.1", 0), trace_packet=trace)
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    client = AsyncModbusTcpClient("127.0.0.1", port=port, framer=FramerType.RTU, timeout=2, retries=0)
    try:
        assert await client.connect()
        await client.write_coil(0, True, device_id=1)
        await client.write_coil(0, False, device_id=1)
        await client.write_coil(1, True, device_id=1)
        await client.write_coils(0, [True, False, False, False, False, False, True, False], device_id=1)
        assert (await client.read_coils(0, count=8, device_id=1)).bits[:8] == [True] + [False] * 5 + [
            True,
            False,
        ]
        assert (await client.read_discrete_inputs(0, count=8, device_id=1)).bits[:8] == [True, False] * 4
        await client.write_coils(0, [True, False, True, False, False, False, False, False], device_id=1)
        await client.read_holding_registers(0, count=1, device_id=1)
        await client.write_register(1, 0x0100, device_id=1)
    finally:
        client.close()
        await server.shutdown()
    return frames


async def test_pymodbus_wire_frames_match_worked_table():
    frames = await _capture_pymodbus_frames()
    requests = [f.hex(" ").upper() for sending, f in frames if not sending]
    responses = [f.hex(" ").upper() for sending, f in frames if sending]
    for name in (
        "coil0_on",
        "coil0_off",
        "coil1_on",
        "read8_coils",
        "read8_di",
        "write8_coils_05",
        "read_hr0",
        "r421_ch1_open",
    ):
        assert WORKED[name] in requests, name
    assert WORKED["coil0_on"] in responses  # FC05 answer echoes the request
    for name in ("read_coils_resp_0_6", "read_di_resp_0246", "write8_coils_resp"):
        assert WORKED[name] in responses, name


async def _driver_frames(output_mode: str = "coils", **update) -> list[bytes]:
    """Frames the board receives while our driver connects and sends one open pulse."""
    received: list[bytes] = []
    config = standalone_config(framer="rtu", output_mode=output_mode).model_copy(update=update)
    sim = IoBoardSimulator(
        config, advance_scene=False, trace_packet=lambda s, d: None if s else received.append(bytes(d))
    )
    port = await sim.start()
    config = config.model_copy(
        update={"link": config.link.model_copy(update={"port": port}), "pulse_ms": 100}
    )
    driver = IoBoardDriver(config, lambda obs: None)
    task = asyncio.create_task(driver.run())
    try:
        for _ in range(100):
            if driver.counters["polls"]:
                break
            await asyncio.sleep(0.02)
        received.clear()
        await driver.command(BarrierPulse("open"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()
    return [f for f in received if f[1] != 0x02]  # drop the input polls


async def test_driver_coil_pulse_frames():
    assert await _driver_frames() == [bytes.fromhex(WORKED["coil0_on"]), bytes.fromhex(WORKED["coil0_off"])]


async def test_driver_command_register_momentary_frame():
    # standalone_config puts barrier_open on channel 1 for command-register boards; default: momentary (05)
    assert await _driver_frames("command_register") == [with_crc("010600010500")]


async def test_driver_command_register_open_close_frames():
    frames = await _driver_frames("command_register", register_pulse="open_close")
    assert frames == [bytes.fromhex(WORKED["r421_ch1_open"]), bytes.fromhex(WORKED["r421_ch1_close"])]
