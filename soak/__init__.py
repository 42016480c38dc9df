"""soak: fleet stability soak tests for AI accelerators."""

__version__ = "0.1.0"
