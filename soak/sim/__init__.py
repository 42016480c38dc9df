"""Simulated accelerators with plausible physics and injected faults, for campaigns without hardware."""
