"""Workloads (one file each) and the device backends they run on."""
