"""Collectors: one module per source of node telemetry."""
