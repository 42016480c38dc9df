"""The file layouts `soak import` reads."""

from __future__ import annotations

from enum import StrEnum


class FileFormat(StrEnum):
    """`long`: one sample a line in soak's names; `nvidia-smi`: `nvidia-smi --query-gpu ... --format=csv`."""

    LONG = "long"
    NVIDIA_SMI = "nvidia-smi"
