"""Write dashboards/json/<uid>.json for every dashboard (and the Kubernetes copy), or with --check fail when the
committed files differ."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboards.campaign_over_weeks import CAMPAIGN_OVER_WEEKS
from dashboards.dashboard import Dashboard
from dashboards.device_detail import DEVICE_DETAIL
from dashboards.errors import ERRORS
from dashboards.fleet_overview import FLEET_OVERVIEW

DASHBOARDS: tuple[Dashboard, ...] = (FLEET_OVERVIEW, DEVICE_DETAIL, CAMPAIGN_OVER_WEEKS, ERRORS)
JSON_DIR = Path(__file__).resolve().parent / "json"
# kustomize reads files only below its kustomization, so the Kubernetes deployment carries a copy of its own.
K8S_DIR = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "base" / "grafana" / "dashboards"
OUTPUT_DIRS = (JSON_DIR, K8S_DIR)


def render(dashboard: Dashboard) -> str:
    """The file's text: sorted keys and fixed indentation, so a change reviews as a small diff."""
    return json.dumps(dashboard.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """Every dashboard's file name and text."""
    return {f"{dashboard.uid}.json": render(dashboard) for dashboard in DASHBOARDS}


def stale_files(json_dir: Path = JSON_DIR) -> list[str]:
    """Files that differ from what the code renders, are missing, or belong to no dashboard."""
    expected = rendered()
    present = {path.name for path in json_dir.glob("*.json")}
    stale = [name for name, text in expected.items() if name not in present or (json_dir / name).read_text() != text]
    return sorted(stale + sorted(present - expected.keys()))


def main(argv: list[str] | None = None) -> int:
    """Write the JSON files, or with --check report stale ones and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when dashboards/json differs from the code")
    args = parser.parse_args(argv)
    root = JSON_DIR.parent.parent
    if args.check:
        stale = [(directory, name) for directory in OUTPUT_DIRS for name in stale_files(directory)]
        for directory, name in stale:
            where = (directory / name).relative_to(root)
            print(f"{where} is stale; run: python -m dashboards.generate", file=sys.stderr)
        return 1 if stale else 0
    expected = rendered()
    for directory in OUTPUT_DIRS:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in expected.items():
            (directory / name).write_text(text)
        for path in directory.glob("*.json"):
            if path.name not in expected:
                path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
