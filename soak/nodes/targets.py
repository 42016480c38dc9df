"""The Prometheus scrape targets of a soak fleet, kept current as a file_sd file: a new node needs no config edit."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from soak.nodes.models import Node

# The alert rules tell the two apart by this label (deploy/prometheus/rules/alerts.yml: up{role="agent"}).
CONTROLLER_ROLE = "controller"
AGENT_ROLE = "agent"


def scrape_targets(*, controller_address: str, nodes: Sequence[Node]) -> list[dict[str, object]]:
    """One target group for the controller and one per node whose agent serves /metrics."""
    groups: list[dict[str, object]] = [{"targets": [controller_address], "labels": {"role": CONTROLLER_ROLE}}]
    for node in sorted(nodes, key=lambda node: node.name):
        if node.agent_url:
            groups.append(
                {"targets": [urlsplit(node.agent_url).netloc], "labels": {"role": AGENT_ROLE, "node": node.name}}
            )
    return groups


def write_scrape_targets(*, path: Path, controller_address: str, nodes: Sequence[Node]) -> None:
    """Replace the file at once, so Prometheus never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(scrape_targets(controller_address=controller_address, nodes=nodes), indent=2))
    os.replace(partial, path)
