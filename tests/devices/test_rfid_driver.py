"""RFID reader driver against the simulator over real TCP sockets and a real pty: Chafon polling with
multi-frame answers, EM4100 (14/16 bytes, XOR/sum), ASCII EPC lines, de-duplication, faults, silence."""

import asyncio
import time

import pytest

from edge_agent.codecs import chafon
from edge_agent.drivers import rfid as rfid_driver
from edge_agent.drivers.rfid import RfidReaderDriver, TagDeduper
from edge_agent.observations import TagRead
from firmware_configs.devices import RfidReaderConfig
from simulators.faults import Faults
from simulators.rfid import RfidSimulator
from simulators.scene import LaneScene, VehicleSpec

EPC = "E2801160600002090AD5C1F3"
SEAL = "E2C0000000000000000ABCDE"
CARD = "13005D1DA5"


def config(port: str = "/dev/null", **kw) -> RfidReaderConfig:
    fields = dict(
        id="eplate",
        type="rfid_reader",
        role="e_plate",
        serial={"port": port, "baudrate": 57600},
        protocol="chafon",
        poll_interval_ms=100,
        dedupe_window_s=30.0,
        reconnect_max_s=0.5,
    )
    fields.update(kw)
    return RfidReaderConfig(**fields)


def truck_at_gate() -> LaneScene:
    """A shared scene with one truck standing at the reader (tags stay in the field for ~28 s)."""
    scene = LaneScene()
    scene.arrive(VehicleSpec(plate="沪A12345", epc=EPC, seal_id=SEAL, driver_card=CARD))
    scene.advance(time.monotonic())
    return scene


async def until(predicate, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def start(sim: RfidSimulator, cfg: RfidReaderConfig, *, pty: bool = False):
    url = sim.serve_pty() if pty else f"socket://127.0.0.1:{await sim.serve_tcp('127.0.0.1', 0)}"
    out: list[TagRead] = []
    driver = RfidReaderDriver(
        cfg.model_copy(update={"serial": cfg.serial.model_copy(update={"port": url})}), out.append
    )
    return driver, out, asyncio.create_task(driver.run())


def test_deduper_lets_a_tag_through_once_per_window():
    d = TagDeduper(3.0)
    assert [d.admit("A", t) for t in (0.0, 1.0, 2.9, 3.0, 3.5)] == [True, False, False, True, False]
    assert d.admit("B", 1.0)


def test_multi_frame_inventory_answer_yields_every_tag():
    out: list[TagRead] = []
    driver = RfidReaderDriver(config(), out.append)
    tags = [
        chafon.InventoryTag(bytes.fromhex(EPC), 1, 0x60),
        chafon.InventoryTag(bytes.fromhex(SEAL), 2, 0x55),
    ]
    frames = b"".join(
        chafon.encode_response(
            chafon.ChafonResponse(0, 1, chafon.STATUS_MORE, chafon.inventory_data([t], antenna=t.antenna))
        )
        for t in tags
    )
    done = chafon.encode_response(
        chafon.ChafonResponse(0, 1, chafon.STATUS_DONE, chafon.inventory_data([], antenna=1))
    )
    decoder = driver.decoder()
    assert driver.feed(frames, 1.0, decoder) is False  # status 0x03: more frames follow
    assert driver.feed(done, 1.0, decoder) is True
    assert [(r.tag_id, r.antenna, r.rssi, r.role) for r in out] == [
        (EPC, 1, 0x60, "e_plate"),
        (SEAL, 2, 0x55, "e_plate"),
    ]


async def test_every_protocol_reads_the_truck_and_collapses_repeats():
    scene = truck_at_gate()
    readers = [
        (config(), False),
        (config(id="eseal", role="e_seal", reader_address=1), False),
        (
            config(id="card", role="driver_card", protocol="em4100", serial={"port": "x", "baudrate": 9600}),
            True,
        ),
        (
            config(
                id="card16",
                role="driver_card",
                protocol="em4100",
                em4100_frame_length=16,
                em4100_check="sum",
                serial={"port": "x", "baudrate": 9600},
            ),
            False,
        ),
        (config(id="auto", protocol="ascii-epc"), True),
    ]
    runs = []
    for cfg, pty in readers:
        sim = RfidSimulator(cfg, scene=scene, repeat_s=0.1)
        runs.append((cfg, sim, *(await start(sim, cfg, pty=pty))))
    try:
        for _cfg, _sim, _driver, out, _task in runs:
            await until(lambda out=out: len(out) >= 1)
        await asyncio.sleep(1.0)  # many more reads happen; none may come through again
    finally:
        for *_, task in runs:
            task.cancel()
        for _, sim, *_ in runs:
            await sim.close()
    expected = {"eplate": EPC, "eseal": SEAL, "card": CARD, "card16": CARD, "auto": EPC}
    for cfg, _sim, driver, out, _task in runs:
        assert [(r.device_id, r.role, r.tag_id) for r in out] == [(cfg.id, cfg.role, expected[cfg.id])]
        assert driver.health.counters["frames_ok"] >= 3, cfg.id  # the reader kept reporting the tag
        assert driver.health.counters["frames_bad"] <= 1, cfg.id
    chafon_sim = runs[0][1]
    assert chafon_sim.inventories >= 3


async def test_no_tags_is_a_healthy_empty_answer():
    cfg = config()
    sim = RfidSimulator(cfg, scene=LaneScene())
    driver, out, task = await start(sim, cfg)
    try:
        await until(lambda: driver.health.counters["frames_ok"] >= 3)
    finally:
        task.cancel()
        await sim.close()
    assert out == [] and driver.health.observed == "up"


async def test_corrupted_answers_are_counted_and_tags_still_read():
    cfg = config(failures_before_down=100)
    faults = Faults(noise=0.2, bad_checksum=0.2, bitflip=0.01, seed=3)
    sim = RfidSimulator(cfg, scene=truck_at_gate(), faults=faults)
    driver, out, task = await start(sim, cfg)
    try:
        await until(lambda: driver.health.counters["frames_bad"] >= 3 and out)
    finally:
        task.cancel()
        await sim.close()
    assert {r.tag_id for r in out} == {EPC}  # never a made-up tag


async def test_em4100_bad_checks_are_rejected():
    cfg = config(id="card", role="driver_card", protocol="em4100", failures_before_down=100)
    sim = RfidSimulator(cfg, scene=truck_at_gate(), faults=Faults(bad_checksum=0.5, seed=1), repeat_s=0.05)
    driver, out, task = await start(sim, cfg)
    try:
        await until(lambda: driver.health.counters["frames_bad"] >= 3 and out)
    finally:
        task.cancel()
        await sim.close()
    assert [r.tag_id for r in out] == [CARD]


async def test_silent_reader_goes_down_and_recovers(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rfid_driver, "ANSWER_TIMEOUT_S", 0.2)
    cfg = config(failures_before_down=3)
    sim = RfidSimulator(cfg, scene=truck_at_gate(), faults=Faults(silence_after_s=0.5, silence_for_s=1.5))
    driver, out, task = await start(sim, cfg)
    try:
        await until(lambda: driver.health.observed == "up" and out)
        await until(lambda: driver.health.observed == "down")
        assert driver.health.last_error == "no answer to inventory"
        await until(lambda: driver.health.observed == "up", 5)
    finally:
        task.cancel()
        await sim.close()


async def test_reader_reconnects_after_restart():
    cfg = config()
    scene = truck_at_gate()
    sim = RfidSimulator(cfg, scene=scene)
    port = await sim.serve_tcp("127.0.0.1", 0)
    out: list[TagRead] = []
    driver = RfidReaderDriver(
        cfg.model_copy(
            update={"serial": cfg.serial.model_copy(update={"port": f"socket://127.0.0.1:{port}"})}
        ),
        out.append,
    )
    task = asyncio.create_task(driver.run())
    try:
        await until(lambda: driver.health.counters["frames_ok"] >= 2)
        await sim.close()
        await until(lambda: driver.health.counters["reconnects"] >= 2)
        sim2 = RfidSimulator(cfg, scene=scene)
        await sim2.serve_tcp("127.0.0.1", port)
        ok = driver.health.counters["frames_ok"]
        try:
            await until(lambda: driver.health.counters["frames_ok"] >= ok + 2)
        finally:
            await sim2.close()
    finally:
        task.cancel()


def test_answers_from_another_reader_address_are_ignored():
    out: list[TagRead] = []
    driver = RfidReaderDriver(config(reader_address=2), out.append)
    data = chafon.inventory_data([chafon.InventoryTag(bytes.fromhex(EPC), 1, 0x60)], antenna=1)
    decoder = driver.decoder()
    driver.feed(chafon.encode_response(chafon.ChafonResponse(1, 1, chafon.STATUS_DONE, data)), 1.0, decoder)
    assert out == []
    driver.feed(chafon.encode_response(chafon.ChafonResponse(2, 1, chafon.STATUS_DONE, data)), 1.0, decoder)
    assert [r.tag_id for r in out] == [EPC]


# ----------------------------------------------------------------------------- re-gather (Retrigger)
async def test_regather_sends_an_inventory_at_once_and_reports_the_tag_again():
    cfg = config(poll_interval_ms=5000)  # the next poll is 5 s away; the tag was reported once
    sim = RfidSimulator(cfg, scene=truck_at_gate())
    driver, out, task = await start(sim, cfg, pty=True)
    try:
        await until(lambda: len(out) == 1 and sim.inventories == 1)
        assert await driver.regather() is None
        await until(lambda: sim.inventories == 2 and len(out) == 2, 2)
    finally:
        task.cancel()
        await sim.close()
    assert [r.tag_id for r in out] == [EPC, EPC]


async def test_regather_on_a_streaming_reader_says_it_reports_on_its_own_and_passes_the_next_read():
    cfg = config(id="card", role="driver_card", protocol="em4100", serial={"port": "x", "baudrate": 9600})
    sim = RfidSimulator(cfg, scene=truck_at_gate(), repeat_s=0.1)
    driver, out, task = await start(sim, cfg)
    try:
        await until(lambda: len(out) == 1)
        await asyncio.sleep(0.5)
        assert len(out) == 1  # repeats are collapsed …
        reason = await driver.regather()
        await until(lambda: len(out) == 2, 2)  # … until a re-gather: the card in the field is read again
    finally:
        task.cancel()
        await sim.close()
    assert reason is not None and "report on their own" in reason
    assert [r.tag_id for r in out] == [CARD, CARD]
