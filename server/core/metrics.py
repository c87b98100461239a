"""Prometheus metrics, one registry per app (so tests can build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge("trinity_ws_connections", "Open room WebSocket connections", registry=self.registry)
        self.rooms_loaded = Gauge(
            "trinity_rooms_loaded", "Rooms with a live hub in this instance", registry=self.registry
        )
        self.messages_in = Counter(
            "trinity_ws_messages_in", "Frames received from clients", ["type"], registry=self.registry
        )
        self.messages_out = Counter("trinity_ws_messages_out", "Frames queued to clients", registry=self.registry)
        self.errors = Counter("trinity_ws_errors", "Error frames sent, by code", ["code"], registry=self.registry)
        self.slow_dropped = Counter(
            "trinity_ws_slow_consumers_dropped", "Clients dropped for not reading", registry=self.registry
        )
        self.op_latency = Histogram(
            "trinity_op_latency_seconds",
            "From receiving an op to acknowledging it (persisted)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.seq_conflicts = Counter(
            "trinity_room_seq_conflicts",
            "Room log appends refused because another instance appended first (the ops are decided again)",
            registry=self.registry,
        )
        self.ops_forwarded = Counter(
            "trinity_room_ops_forwarded",
            "Ops sent to the instance leading their room, to be decided there (rooms/forwarding.py)",
            registry=self.registry,
        )
        self.http_requests = Counter(
            "trinity_http_requests", "HTTP requests", ["method", "status"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
