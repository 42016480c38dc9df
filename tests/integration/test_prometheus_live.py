"""A real Prometheus scraping a real short campaign: soak's rules evaluate, its dashboards' queries answer, and
the alerts of the injected faults go off on their devices and on no healthy one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.dashboard_queries import DASHBOARD_FILES, load, panels, substitute
from tests.prometheus_server import instant, running_prometheus

if TYPE_CHECKING:
    from tests.integration.conftest import LocalStack

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
HEALTHY_DEVICE = "sim3"
# Injected fault → the alert on-call must see for it, on the faulty device.
EXPECTED_ALERTS = {
    ("SoakDriverErrorFail", "sim1"),
    ("SoakSilentDataCorruption", "sim2"),
    ("SoakHostMemoryLeak", "sim0"),
}


def _plan() -> dict[str, Any]:
    return {
        "name": "prometheus-live",
        "duration": "100s",
        "warmup": "10s",
        "rotation": "100s",
        "devices": {"simulated": 4},
        "workloads": [{"name": "gemm"}],
        "faults": [
            {"kind": "memory_leak", "device": "sim0", "target": "host", "start": "5s", "rate_mib_per_hour": 8192},
            {"kind": "driver_errors", "device": "sim1", "start": "20s", "xid": 79, "rate_per_hour": 360},
            {"kind": "sdc", "device": "sim2", "start": "20s", "rate_per_hour": 360},
        ],
    }


def _config(targets_file: Path) -> str:
    rules = "\n".join(f"  - {path}" for path in sorted(RULES_DIR.glob("*.yml")))
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n{rules}\n"
        "scrape_configs:\n"
        "  - job_name: soak\n"
        "    honor_labels: true\n"
        "    file_sd_configs:\n"
        f"      - files: ['{targets_file}']\n"
        "        refresh_interval: 1s\n"
    )


def _alerts(url: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = httpx.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return [alert for alert in alerts if alert["state"] in {"pending", "firing"}]


def test_rules_and_dashboards_work_against_a_live_campaign(
    local_stack: Callable[..., LocalStack], tmp_path: Path
) -> None:
    targets_file = tmp_path / "targets" / "soak.json"
    stack = local_stack(node="box", simulated=4, prometheus_targets_file=targets_file)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    with running_prometheus(_config(targets_file), workdir) as url:
        campaign_id = stack.submit(_plan())
        seen: set[tuple[str, str]] = set()
        give_up_s = time.time() + 240
        # Findings are exported while the campaign runs; watch the alerts until every expected one went off.
        while not seen >= EXPECTED_ALERTS and time.time() < give_up_s:
            seen |= {
                (alert["labels"]["alertname"], alert["labels"].get("device", ""))
                for alert in _alerts(url)
                if alert["labels"].get("severity") != "info"
            }
            time.sleep(1)
        assert seen >= EXPECTED_ALERTS, f"missing {EXPECTED_ALERTS - seen}; saw {seen}"
        assert not {alert for alert in seen if alert[1] == HEALTHY_DEVICE}, seen

        # Both processes' targets came from the file the controller keeps, and Prometheus scraped them.
        targets = json.loads(targets_file.read_text())
        assert {group["labels"]["role"] for group in targets} == {"controller", "agent"}
        up = instant(url, "up").json()["data"]["result"]
        assert len(up) == 2 and all(sample["value"][1] == "1" for sample in up), up

        # Every rule evaluates without error on the live series.
        groups = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        broken = [(rule["name"], rule.get("lastError")) for group in groups for rule in group["rules"]]
        assert [problem for problem in broken if problem[1]] == []

        # Every dashboard query parses and runs; the device panels of the campaign's devices answer with data.
        failed = []
        answered = 0
        for path in DASHBOARD_FILES:
            for panel in panels(load(path)):
                for target in panel.get("targets", []):
                    answer = instant(url, substitute(target["expr"])).json()
                    if answer["status"] != "success":
                        failed.append((path.name, panel["title"], answer.get("error")))
                    elif answer["data"]["result"]:
                        answered += 1
        assert failed == []
        assert answered >= 20, f"only {answered} dashboard queries returned data"
        # Everything asked of the rules and dashboards has been seen: the rest of the campaign adds nothing here.
        stack.client.post(f"/api/v1/campaigns/{campaign_id}/stop").raise_for_status()
        assert stack.wait_for_end(campaign_id)["campaign"]["state"] == "stopped"
