"""Operations of the edge agent a field engineer relies on: readable logs in every format."""

import json
import logging

from efence.commands.edge import JsonLogFormatter, configure_logs


def _record(msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord("efence.uplink", logging.WARNING, __file__, 1, msg, args, None)


def test_json_logs_are_one_object_per_line_with_time_level_part_and_message():
    line = JsonLogFormatter().format(_record("uplink %s: broker %s unavailable", "ysp/port-gate", "mqtt://b"))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "WARNING" and entry["logger"] == "efence.uplink"
    assert entry["message"] == "uplink ysp/port-gate: broker mqtt://b unavailable"
    assert entry["time"].endswith("+00:00")


def test_plain_logs_carry_a_utc_timestamp_level_and_part(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logs("INFO", "plain")
        logging.getLogger("efence.agent").info("agent %s starting", "ysp/port-gate")
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    date, clock, level, part, *message = err.split()
    assert len(date) == 10 and clock.endswith("Z") and level == "INFO" and part == "efence.agent"
    assert " ".join(message) == "agent ysp/port-gate starting"


class _FakeDriver:
    def __init__(self, config, can_regather: bool, reason: str | None = None):
        self.config = config
        self.asked = 0
        self.reason = reason
        if can_regather:
            self.regather = self._regather

    async def _regather(self) -> str | None:
        self.asked += 1
        return self.reason


async def test_an_officers_regather_reaches_the_drivers_that_can_read_again(tmp_path, caplog):
    import gate_controller as gc
    from edge_agent.lane_runtime import LaneRuntime
    from edge_agent.outbox import Outbox
    from edge_agent.record_cache import RecordCache
    from firmware_configs.loader import load_zone
    from tests.edge.site import ZONE_FILE

    zone = load_zone(ZONE_FILE)
    cp = zone.checkpoints[0]
    lane = cp.lanes[0]
    drivers = {d.id: _FakeDriver(d, can_regather=d.id == "eplate") for d in lane.devices}
    drivers["weighbridge"] = _FakeDriver(
        drivers["weighbridge"].config, can_regather=True, reason="toledo indicators stream on their own"
    )
    outbox, records = Outbox(tmp_path / "o.sqlite", "z/c"), RecordCache(tmp_path / "r.sqlite", zone.id)
    try:
        runtime = LaneRuntime(
            zone=zone,
            checkpoint=cp,
            lane=lane,
            outbox=outbox,
            records=records,
            is_online=lambda: True,
            records_fresh_at=lambda: None,
            drivers=drivers,
            evidence_dir=tmp_path,
        )
        caplog.set_level(logging.INFO, "efence.lane")
        await runtime._execute_one(gc.Retrigger(device="rfid"))
        await runtime._execute_one(gc.Retrigger(device="plate_camera"))
        await runtime._execute_one(gc.Retrigger(device="weighbridge"))
    finally:
        outbox.close()
        records.close()
    assert drivers["eplate"].asked == 1 and drivers["driver-card"].asked == 0
    assert "eplate asked to read again" in caplog.text
    assert "plate-cam reports on its own" in caplog.text
    assert drivers["weighbridge"].asked == 1
    assert "weighbridge not asked (toledo indicators stream on their own)" in caplog.text


async def test_an_ack_never_drops_an_event_still_waiting_to_be_resent(tmp_path):
    """The hub may ack past a hole it gave up on; the edge keeps the hole's events until they went out."""
    from edge_agent.outbox import Outbox

    outbox = Outbox(tmp_path / "o.sqlite", "z/c")
    try:
        for i in range(3):
            await outbox.append("lane_state", {"i": i})
        await outbox.requeue_all()  # a reconnect: nothing counts as sent
        await outbox.mark_sent([1, 3])  # 2 (the hole) has not gone out again yet
        assert await outbox.acknowledge(3) == 2
        assert [seq for seq, _ in await outbox.due(10, resend_after_s=10)] == [2]
        await outbox.mark_sent([2])
        assert await outbox.acknowledge(3) == 1
        assert (await outbox.stats()).depth == 0
    finally:
        outbox.close()
