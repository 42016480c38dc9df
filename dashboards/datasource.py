"""The one datasource every panel queries; the provisioning file gives it this uid."""

from __future__ import annotations

from typing import Any

DATASOURCE_UID = "soak-prometheus"
DATASOURCE_TYPE = "prometheus"


def datasource_ref() -> dict[str, Any]:
    """The reference panels, targets and variables carry (a fresh dict each time, so no JSON shares state)."""
    return {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
