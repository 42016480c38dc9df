"""The provisioned dashboards: current with their code, loadable by a stock Grafana, every query valid PromQL."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.dashboard_queries import DASHBOARD_FILES, JSON_DIR, load, panels, substitute
from tests.prometheus_server import instant, running_prometheus

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
DATASOURCE_UID = "soak-prometheus"
GRID_COLUMNS = 24
# A golden agent exposition from the recorded H200 and Ascend outputs: what a real agent serves.
AGENT_EXPOSITION = ROOT / "tests" / "fixtures" / "exposition" / "agent.prom"

LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def _datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


def _queries() -> list[Any]:
    """Every panel target's expr and every variable's label_values selector, as pytest params."""
    params = []
    for path in DASHBOARD_FILES:
        dashboard = load(path)
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                name = f"{dashboard['uid']}:{panel['title']}:{target['refId']}"
                params.append(pytest.param(target["expr"], id=name))
        for variable in dashboard["templating"]["list"]:
            match = LABEL_VALUES.match(variable["definition"])
            assert match, f"{dashboard['uid']}: variable {variable['name']} is not a label_values query"
            params.append(pytest.param(match["selector"], id=f"{dashboard['uid']}:${variable['name']}"))
    return params


def test_dashboards_exist() -> None:
    assert {path.stem for path in DASHBOARD_FILES} >= {
        "soak-fleet-overview",
        "soak-device-detail",
        "soak-campaign-over-weeks",
        "soak-errors",
    }


def test_committed_json_is_what_the_code_generates() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dashboards.generate", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_check_mode_names_an_edited_file(tmp_path: Path) -> None:
    for path in DASHBOARD_FILES:
        shutil.copy(path, tmp_path / path.name)
    edited = tmp_path / "soak-errors.json"
    edited.write_text(edited.read_text().replace('"soak / Errors"', '"edited by hand"'))
    program = f"import pathlib, dashboards.generate as g; print(g.stale_files(pathlib.Path({str(tmp_path)!r})))"
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['soak-errors.json']"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda path: path.stem)
def test_grafana_would_load_it(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["uid"] == path.stem and len(dashboard["uid"]) <= 40
    assert dashboard["title"]
    assert dashboard["schemaVersion"] == 39
    every_panel = panels(dashboard)
    ids = [panel["id"] for panel in every_panel]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for ref in _datasource_refs(dashboard):
        assert ref == {"type": "prometheus", "uid": DATASOURCE_UID}, f"unknown datasource {ref} in {path.name}"
    for panel in every_panel:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']}: no query"
        assert all(target["expr"].strip() for target in panel["targets"]), f"{panel['title']}: empty expr"
        assert panel["fieldConfig"]["defaults"]["unit"], f"{panel['title']}: no unit"
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda path: path.stem)
def test_panels_fit_the_grid_without_overlapping(path: Path) -> None:
    boxes = []
    for panel in panels(load(path)):
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["y"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= GRID_COLUMNS, f"{panel['title']} runs past column {GRID_COLUMNS}"
        boxes.append((panel["title"], pos["x"], pos["y"], pos["x"] + pos["w"], pos["y"] + pos["h"]))
    for i, (title, x0, y0, x1, y1) in enumerate(boxes):
        for other, u0, v0, u1, v1 in boxes[i + 1 :]:
            assert x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0, f"{title!r} overlaps {other!r}"


def test_fleet_overview_repeats_a_row_per_node() -> None:
    dashboard = load(JSON_DIR / "soak-fleet-overview.json")
    repeated = [panel for panel in dashboard["panels"] if panel["type"] == "row" and panel.get("repeat")]
    assert [row["repeat"] for row in repeated] == ["node"]
    node = next(variable for variable in dashboard["templating"]["list"] if variable["name"] == "node")
    assert node["multi"] and node["includeAll"]


def test_provisioning_points_grafana_at_the_datasource_and_the_json() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "soak.yml").read_text())["datasources"]
    assert [(source["uid"], source["type"]) for source in datasources] == [(DATASOURCE_UID, "prometheus")]
    assert datasources[0]["url"] == "http://127.0.0.1:9090"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "soak.yml").read_text())["providers"]
    assert [provider["type"] for provider in providers] == ["file"]
    mount = providers[0]["options"]["path"]
    assert mount in (PROVISIONING / "dashboards" / "soak.yml").read_text().split("providers:")[0], (
        "the comment should say where to mount dashboards/json"
    )


class _Exposition(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = AGENT_EXPOSITION.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def agent_address() -> Iterator[str]:
    """The golden agent exposition served on loopback, as an agent's /metrics."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exposition)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory, agent_address: str) -> Iterator[str]:
    """A real Prometheus on loopback scraping the golden agent exposition every second."""
    workdir = tmp_path_factory.mktemp("prometheus")
    config = (
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: agent\n    honor_labels: true\n"
        f"    static_configs:\n      - targets: ['{agent_address}']\n"
    )
    with running_prometheus(config, workdir) as url:
        # Two scrapes in: enough for rate() and deriv() to have something to work on.
        deadline = time.monotonic() + 15
        while True:
            answer = instant(url, "count_over_time(soak_device_energy_joules_total[1m])").json()
            scrapes = answer["data"]["result"]
            if answer["status"] == "success" and scrapes and float(scrapes[0]["value"][1]) >= 2:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus did not scrape the agent: {answer}")
            time.sleep(0.2)
        yield url


def test_prometheus_rejects_a_bad_query(prometheus_url: str) -> None:
    # The check below would pass vacuously if Prometheus accepted anything.
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": "sum by (node (x)"})
    assert response.status_code == 400 and response.json()["errorType"] == "bad_data"


@pytest.mark.parametrize("expr", _queries())
def test_query_is_valid_promql(prometheus_url: str, expr: str) -> None:
    query = substitute(expr)
    assert "$" not in query, f"a Grafana variable the test does not know: {query}"
    response = instant(prometheus_url, query)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{body.get('error')}\n{query}"


def _panel(uid: str, title: str) -> dict[str, Any]:
    dashboard = load(JSON_DIR / f"{uid}.json")
    return next(panel for panel in panels(dashboard) if panel["title"] == title)


# Panels whose families the golden exposition has: on a real agent's series they must show something.
PANELS_WITH_AGENT_DATA = [
    ("soak-fleet-overview", "Nodes reporting"),
    ("soak-device-detail", "Temperature and slowdown threshold"),
    ("soak-device-detail", "Power and cap"),
    ("soak-device-detail", "SM clock"),
    ("soak-device-detail", "Throttle reasons"),
    ("soak-device-detail", "Worker memory with trend"),
    ("soak-device-detail", "Device memory in use"),
    ("soak-device-detail", "Utilisation"),
    ("soak-device-detail", "Throughput with baseline band"),
    ("soak-campaign-over-weeks", "Energy per unit of work"),
    ("soak-campaign-over-weeks", "Scaling efficiency"),
    ("soak-campaign-over-weeks", "Temperature margin to slowdown"),
    ("soak-errors", "Vendor health status"),
    ("soak-errors", "Remapped rows and retired pages"),
    ("soak-errors", "PCIe link against its maximum"),
]


@pytest.mark.parametrize(("uid", "title"), PANELS_WITH_AGENT_DATA, ids=lambda value: value)
def test_panel_shows_a_real_agents_series(prometheus_url: str, uid: str, title: str) -> None:
    results = [
        instant(prometheus_url, substitute(target["expr"])).json()["data"]["result"]
        for target in _panel(uid, title)["targets"]
    ]
    assert any(results), f"{uid} / {title}: no series from the agent exposition"


def test_fleet_cells_show_every_device_green_when_nothing_is_found(prometheus_url: str) -> None:
    [target] = _panel("soak-fleet-overview", "Devices on $node by worst active finding")["targets"]
    result = instant(prometheus_url, substitute(target["expr"])).json()["data"]["result"]
    cells = {entry["metric"]["device"]: float(entry["value"][1]) for entry in result}
    inventory = instant(prometheus_url, 'count by (device) (soak_device_temperature_celsius{device!=""})').json()
    assert cells == {entry["metric"]["device"]: 0.0 for entry in inventory["data"]["result"]}
