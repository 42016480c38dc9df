"""Telemetry soak did not collect (CSV files from earlier proofs of concept), imported into the store."""
