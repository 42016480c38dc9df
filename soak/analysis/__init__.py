"""Detectors that turn telemetry series into findings: memory leaks and throughput drops."""
