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
