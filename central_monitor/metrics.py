"""Prometheus exposition of the hub (`GET /metrics`, bearer token of any user): ingest counters and gauges."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .ingest import Ingest
from .store import HubStore

COUNTERS = {
    "stored": "Events stored (first time).",
    "duplicates": "Events received again and ignored (already stored).",
    "seq_conflicts": "Events reusing an agent's seq under another id.",
    "malformed": "Messages rejected as malformed.",
    "batches": "SQLite commits of event batches.",
    "acks_sent": "HubAck messages published.",
    "resend_requests": "ResendRequest messages published.",
    "gaps_abandoned": "Seq gaps given up on after the resend attempts.",
    "deltas_published": "Record deltas published.",
    "connects": "Broker connections made.",
    "connection_errors": "Broker connections lost or refused.",
    "store_errors": "Failed store commits (retried).",
}


class _HubCollector:
    def __init__(self, store: HubStore, ingest: Ingest | None) -> None:
        self.store, self.ingest = store, ingest

    def collect(self) -> Iterator[Metric]:
        counters: Any = self.ingest.metrics.counters if self.ingest else {}
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"efence_hub_{name}", doc, value=counters.get(name, 0))
        if self.ingest:
            by_reason = CounterMetricFamily(
                "efence_hub_malformed_by_reason", "Malformed messages by reason.", labels=["reason"]
            )
            for reason, n in self.ingest.metrics.malformed_by_reason.items():
                by_reason.add_metric([reason], n)
            yield by_reason
            yield GaugeMetricFamily(
                "efence_hub_broker_connected",
                "1 when connected to the broker.",
                value=int(self.ingest.connected.is_set()),
            )
            yield GaugeMetricFamily(
                "efence_hub_ingest_queue",
                "Events received, not yet committed.",
                value=self.ingest.queued_events,
            )
        health = self.store.health()
        yield GaugeMetricFamily(
            "efence_hub_store_ok", "1 when the store passes its quick check.", value=int(health["ok"])
        )
        rows = GaugeMetricFamily("efence_hub_rows", "Rows per table.", labels=["table"])
        for table, n in health["counts"].items():
            rows.add_metric([table], n)
        yield rows
        agents = self.store.list_agents()
        yield GaugeMetricFamily(
            "efence_hub_agents_online", "Checkpoints online.", value=sum(a["online"] for a in agents)
        )
        yield GaugeMetricFamily("efence_hub_agents", "Checkpoints known.", value=len(agents))


def exposition(store: HubStore, ingest: Ingest | None) -> bytes:
    """Prometheus text format; blocking (reads the store), so call it on the store's thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HubCollector(store, ingest))  # type: ignore[arg-type]
    return generate_latest(registry)
