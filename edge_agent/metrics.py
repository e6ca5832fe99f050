"""Prometheus metrics of an edge agent, on their own registry so several agents can share a process (demo)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.outbox_depth = Gauge(
            "efence_outbox_depth", "Events waiting for the hub's acknowledgement", registry=r
        )
        self.outbox_oldest_age = Gauge(
            "efence_outbox_oldest_age_seconds", "Age of the oldest unacknowledged event", registry=r
        )
        self.outbox_shed = Gauge(
            "efence_outbox_shed_total",
            "Telemetry events shed: reason=capacity (refused at the capacity bound) or age (older than the "
            "age bound, tombstoned); decisions and alarms are never shed",
            ["reason"],
            registry=r,
        )
        self.outbox_capacity = Gauge("efence_outbox_capacity", "Outbox capacity bound, events", registry=r)
        self.outbox_max_age = Gauge(
            "efence_outbox_max_age_seconds", "Outbox age bound for telemetry, seconds", registry=r
        )
        self.outbox_alarm = Gauge(
            "efence_outbox_alarm", "1 while the outbox_filling alarm is raised", registry=r
        )
        self.record_version = Gauge(
            "efence_record_version", "Replication seq of the local record cache", registry=r
        )
        self.record_age = Gauge(
            "efence_record_age_seconds",
            "Seconds since the record cache was known to match the hub",
            registry=r,
        )
        self.uplink_connected = Gauge(
            "efence_uplink_connected", "1 while connected to the broker and the hub is alive", registry=r
        )
        self.decisions = Counter("efence_decisions_total", "Lane verdicts", ["lane", "verdict"], registry=r)
        self.decision_seconds = Histogram(
            "efence_decision_seconds",
            "Arming loop to verdict, seconds",
            ["lane"],
            buckets=(0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
            registry=r,
        )
        self.device_up = Gauge("efence_device_up", "1 up, 0 down, -1 unknown", ["lane", "device"], registry=r)
        self.device_bad_frames = Gauge(
            "efence_device_bad_frames", "Corrupted frames rejected", ["lane", "device"], registry=r
        )
        self.commands = Counter(
            "efence_commands_total", "Operator commands by outcome", ["outcome"], registry=r
        )
        self.rejected_messages = Counter(
            "efence_rejected_messages_total", "Malformed MQTT messages rejected", registry=r
        )
