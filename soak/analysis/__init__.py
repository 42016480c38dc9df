"""Detectors that turn telemetry into findings, one file each; the fleet simulator that scores them."""
