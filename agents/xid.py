"""NVIDIA XID codes and what a soak test does with them (DCGM health watch, NVIDIA's XID catalogue)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class XidClass:
    """Severity and recommended action for one code."""

    severity: str  # info | warning | critical
    action: str


_APPLICATION = XidClass("info", "usually the application: record and count; a finding only on a high rate")
_WARN = XidClass("warning", "watch the rate; reset the GPU at the next convenient moment")
_FAIL = XidClass("critical", "take the device out of service; reset, and RMA if it recurs")

CATALOGUE: dict[int, XidClass] = {
    **dict.fromkeys((13, 31, 43, 45, 68), _APPLICATION),
    **dict.fromkeys((63, 92, 94), _WARN),
    **dict.fromkeys((48, 64, 74, 79, 95, 119, 120, 140, 154), _FAIL),
}


def classify(code: int) -> XidClass:
    """The class of an XID code; an unknown code is a warning until someone classifies it."""
    return CATALOGUE.get(code, XidClass("warning", "unknown code: look it up in NVIDIA's XID catalogue"))
