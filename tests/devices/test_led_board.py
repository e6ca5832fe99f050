"""LED board: the efence-text protocol end to end — driver `ShowText` → simulator over TCP and a real pty,
NAK on a spoiled frame, no ACK from a silent board, and the text written again after a reconnect."""

import asyncio
import time

import pytest

from edge_agent.codecs import led_text
from edge_agent.drivers import led_board as led_driver
from edge_agent.drivers.base import CommandNotSupported, DeviceCommand
from edge_agent.drivers.led_board import LedBoardDriver, ShowText
from firmware_configs.devices import LedBoardConfig
from simulators.faults import Faults
from simulators.led_board import LedBoardSimulator


def config(port: str = "/dev/null", **kw) -> LedBoardConfig:
    fields = dict(id="led", type="led_board", serial={"port": port}, lines=2, reconnect_max_s=0.5)
    fields.update(kw)
    return LedBoardConfig(**fields)


async def until(predicate, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def driver_for(url: str, **kw) -> LedBoardDriver:
    return LedBoardDriver(config(url, **kw), lambda obs: None)


@pytest.mark.parametrize("transport", ["tcp", "pty"])
async def test_show_text_reaches_the_board(transport):
    sim = LedBoardSimulator(config())
    url = sim.serve_pty() if transport == "pty" else f"socket://127.0.0.1:{await sim.serve_tcp()}"
    driver = driver_for(url)
    task = asyncio.create_task(driver.run())
    try:
        await driver.command(ShowText(["沪A12345", "请通行 PLEASE PASS"], colour="green"))
        assert await driver.wait_shown()
        assert sim.lines == ["沪A12345", "请通行 PLEASE PASS"]
        assert sim.colours == ["G", "G"]
        await driver.command(ShowText(["禁止通行"]))  # fewer lines: the rest is cleared
        assert await driver.wait_shown()
        assert sim.lines == ["禁止通行", ""] and sim.colours == ["R", "R"]
        assert sim.text == "禁止通行\n"
    finally:
        task.cancel()
        await sim.close()
    assert driver.health.counters["frames_ok"] == 4 and driver.health.counters["frames_bad"] == 0


async def test_utf8_board():
    sim = LedBoardSimulator(config(encoding="utf-8", lines=1))
    driver = driver_for(f"socket://127.0.0.1:{await sim.serve_tcp()}", encoding="utf-8", lines=1)
    task = asyncio.create_task(driver.run())
    try:
        await driver.command(ShowText(["称重 30.12 t"], colour="yellow"))
        assert await driver.wait_shown()
        assert sim.lines == ["称重 30.12 t"] and sim.colours == ["Y"]
    finally:
        task.cancel()
        await sim.close()


async def test_text_that_does_not_fit_is_cut_not_refused():
    sim = LedBoardSimulator(config())
    driver = driver_for(f"socket://127.0.0.1:{await sim.serve_tcp()}")
    task = asyncio.create_task(driver.run())
    try:
        await driver.command(ShowText(["一" * 40, "two\x03", "three"]))  # 80 bytes, a control char, 3 lines
        assert await driver.wait_shown()
        assert sim.lines == ["一" * 32, "two "]  # 64 bytes of GB18030; ETX blanked; third line dropped
    finally:
        task.cancel()
        await sim.close()
    with pytest.raises(CommandNotSupported):
        await driver.command(DeviceCommand())


async def test_board_answers_nak_to_a_spoiled_frame():
    sim = LedBoardSimulator(config())
    reader, writer = await asyncio.open_connection("127.0.0.1", await sim.serve_tcp())
    try:
        good = led_text.encode(led_text.LedText(1, "OK"))
        writer.write(good[:-1] + (b"0" if good[-1:] != b"0" else b"1"))
        assert await asyncio.wait_for(reader.read(1), 2) == b"\x15"
        writer.write(good)
        assert await asyncio.wait_for(reader.read(1), 2) == b"\x06"
        assert sim.lines[0] == "OK" and sim.frames_bad == 1
    finally:
        writer.close()
        await sim.close()


async def test_silent_board_is_reported_and_text_is_rewritten_after_reconnect(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(led_driver, "ACK_TIMEOUT_S", 0.2)
    silent = LedBoardSimulator(config(), faults=Faults(silence_after_s=0.0))
    port = await silent.serve_tcp()
    driver = driver_for(f"socket://127.0.0.1:{port}", failures_before_down=2)
    task = asyncio.create_task(driver.run())
    try:
        started = time.monotonic()
        await driver.command(ShowText(["请停车", "STOP"]))
        assert time.monotonic() - started < 0.1  # the lane is never blocked by a dead board
        assert not await driver.wait_shown(1.0)
        assert silent.lines == ["请停车", "STOP"]  # it heard us but never acknowledged
        assert driver.health.last_error == "no ACK from board"
        assert driver.health.observed == "down"
        await silent.close()  # the board is power-cycled: comes back blank
        board = LedBoardSimulator(config())
        await board.serve_tcp("127.0.0.1", port)
        try:
            await until(lambda: board.lines == ["请停车", "STOP"])  # written again without a new command
            await until(lambda: driver.health.observed == "up")
        finally:
            await board.close()
    finally:
        task.cancel()
        await silent.close()
