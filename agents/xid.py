"""NVIDIA XID codes and what a soak test does with them (NVIDIA's XID catalogue, DCGM health watch).

Severity is soak's: "info" for codes the application usually causes (the GPU stays healthy), "warning" for
codes to watch or fix at a convenient moment, "critical" for codes that take the device out of the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class XidClass:
    """Severity, recommended action and a short title for one code."""

    severity: str  # info | warning | critical
    action: str
    title: str


_APPLICATION = "usually the application: restart it; count, and raise a finding only on a high rate"
_RESTART_APP = "restart the application; a finding if it repeats on this device"
_RESET = "take the device out of the campaign and reset the GPU; RMA if it recurs"
_REBOOT = "take the node out of the campaign and reboot it; RMA the GPU if it recurs"
_RMA = "take the device out of the campaign, reset the GPU and open an RMA case"
_WATCH = "keep running and watch the rate; reset the GPU at the next convenient moment"
_NVLINK = "take the device and its NVLink peers out of the campaign, reset them, check the links and cabling"


def _entries(severity: str, action: str, titles: dict[int, str]) -> dict[int, XidClass]:
    return {code: XidClass(severity, action, title) for code, title in titles.items()}


CATALOGUE: dict[int, XidClass] = {
    **_entries(
        "info",
        _APPLICATION,
        {
            13: "graphics engine exception",
            31: "GPU memory page fault",
            32: "invalid or corrupted push buffer stream",
            43: "GPU stopped processing (channel reset)",
            45: "preemptive cleanup after an earlier error",
            68: "video decoder (NVDEC0) exception",
            69: "graphics engine class error",
        },
    ),
    **_entries(
        "warning",
        _RESTART_APP,
        {
            8: "GPU stopped processing (channel idle timeout)",
            94: "contained memory error (only the affected application was stopped)",
        },
    ),
    **_entries(
        "warning",
        _WATCH,
        {
            63: "row remap or page retirement recorded (takes effect at the next reset)",
            92: "high single-bit ECC error rate",
            121: "C2C link error",
            137: "NVLink privilege error",
            156: "resource retirement event (takes effect at the next reset)",
        },
    ),
    **_entries(
        "critical",
        _RESET,
        {
            46: "GPU stopped processing (GPU timeout)",
            62: "internal micro-controller halt",
            95: "uncontained memory error",
            109: "context switch timeout",
            110: "security fault",
            119: "GSP RPC timeout",
            120: "GSP error",
            136: "link training failed",
            143: "GPU initialisation error",
            154: "GPU recovery action changed (reset or reboot required)",
            158: "GPU fatal timeout",
        },
    ),
    **_entries(
        "critical",
        _RMA,
        {
            48: "double-bit (uncorrectable) ECC error",
            64: "row remap or page retirement failed",
            140: "unrecovered ECC error",
        },
    ),
    **_entries("critical", _REBOOT, {79: "GPU has fallen off the bus"}),
    **_entries(
        "critical",
        _NVLINK,
        {
            74: "NVLink error",
            144: "NVLink SAW error",
            145: "NVLink RLW error",
            146: "NVLink TLW error",
            147: "NVLink TREX error",
            148: "NVLink NVLPW control error",
            149: "NVLink NETIR error",
            150: "NVLink MSE error",
            155: "NVLink software-defined error",
        },
    ),
}

_UNKNOWN = XidClass("warning", "look the code up in NVIDIA's XID catalogue and classify it here", "unclassified XID")


def classify(code: int) -> XidClass:
    """The class of an XID code; an unknown code is a warning until someone classifies it."""
    return CATALOGUE.get(code, _UNKNOWN)
