"""GET /api/v1/campaigns/{id}/report.{html,pdf,json}: finished, running (interim) and imported campaigns."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.store import store_fleet
from soak.campaigns.models import Campaign, CampaignState
from soak.campaigns.service import create_campaign
from soak.nodes.models import Node
from soak.offline.analyze import analyze_campaign
from soak.offline.formats import FileFormat
from soak.offline.importer import import_file
from soak.plan import parse_plan

TINY = FleetSpec(seed=3, devices=2, devices_per_node=2, days=0.1, sample_interval_s=60.0, warmup_s=600.0)


# Plots make this the slow one; the imported campaign below covers Postgres.
@pytest.mark.parametrize("blank_database_url", ["sqlite"], indirect=True)
def test_a_running_campaign_is_reported_as_interim_with_names_escaped(client: TestClient, session: Session) -> None:
    campaign = store_fleet(session=session, spec=TINY, name="tiny", resolution="raw")
    # A hostile node name (agents name their nodes) must reach the page as text, never as markup.
    session.execute(update(Node).values(name="<script>alert(1)</script>"))
    campaign.state = CampaignState.RUNNING
    campaign.ended_at = None
    session.commit()

    document = client.get(f"/api/v1/campaigns/{campaign.id}/report.json").json()
    assert document["cover"]["interim"] is True
    assert document["verdict_reason"].startswith("Interim")
    assert [d["node"] for d in document["cover"]["devices"]] == ["<script>alert(1)</script>"] * 2

    html = client.get(f"/api/v1/campaigns/{campaign.id}/report.html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)</script>" not in html.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in html.text
    assert "INTERIM" in html.text


def test_unknown_campaigns_and_formats_are_refused_by_name(client: TestClient) -> None:
    missing = client.get("/api/v1/campaigns/999/report.html")
    assert missing.status_code == 404 and "999" in missing.json()["detail"]
    wrong = client.get("/api/v1/campaigns/1/report.docx")
    assert wrong.status_code == 422 and any("report_format" in line for line in wrong.json()["problems"])


def test_an_imported_campaign_is_reported_from_its_findings(
    client: TestClient, session: Session, tmp_path: Path
) -> None:
    start_s, step_s, hours = 1_795_860_000, 30, 4
    lines = ["timestamp,node,device,metric,value"]
    for second in range(0, hours * 3600, step_s):
        stamp = datetime.fromtimestamp(start_s + second, UTC).isoformat()
        for index in (0, 1):
            leak_bytes = 512 * 2**20 * second / 3600 if index == 1 else 0.0
            used_bytes = 80 * 2**30 + (second * 7919 % 13) * 2**20 + leak_bytes
            lines.append(f"{stamp},gpu-01,gpu-01/cuda{index},device.memory_used_bytes,{used_bytes}")
            lines.append(f"{stamp},gpu-01,gpu-01/cuda{index},device.memory_total_bytes,{141 * 2**30}")
            lines.append(f"{stamp},gpu-01,gpu-01/cuda{index},device.temperature_c,{60 + index}")
    path = tmp_path / "poc.csv"
    path.write_text("\n".join(lines) + "\n")
    imported = import_file(session=session, path=path, campaign_name="h200 poc", file_format=FileFormat.LONG)
    campaign = session.get(Campaign, imported.campaign_id)
    assert campaign is not None
    analyze_campaign(session=session, campaign=campaign)

    document = client.get(f"/api/v1/campaigns/{campaign.id}/report.json").json()
    assert document["cover"]["imported"] is True and document["cover"]["interim"] is False
    leak = next(c for c in document["criteria"] if c["section"] == "leak")
    assert leak["failing_devices"] == ["gpu-01/cuda1"]
    assert document["verdict"] in ("FAIL", "CONDITIONAL")
    devices = {d["device"]: d for d in document["devices"]}
    assert devices["gpu-01/cuda0"]["max_temperature_c"] == 60.0
    # The file held no power or throughput: the report says so rather than inventing figures.
    assert devices["gpu-01/cuda0"]["mean_power_w"] is None and devices["gpu-01/cuda0"]["throughput"] == []
    html = client.get(f"/api/v1/campaigns/{campaign.id}/report.html").text
    assert "not measured" in html
    pdf = client.get(f"/api/v1/campaigns/{campaign.id}/report.pdf")
    assert pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-disposition"] == f'attachment; filename="campaign-{campaign.id}-h200-poc.pdf"'


def test_a_campaign_without_telemetry_cannot_pass(
    client: TestClient, session: Session, plan_data: dict[str, Any]
) -> None:
    campaign = create_campaign(session=session, plan=parse_plan(plan_data))
    document = client.get(f"/api/v1/campaigns/{campaign.id}/report.json").json()
    assert document["verdict"] == "CONDITIONAL" and document["cover"]["interim"] is True
    assert "nothing was measured" in document["verdict_reason"]
    assert all(c["status"] == "pass" and c["measured"] for c in document["criteria"])


@pytest.mark.parametrize("blank_database_url", ["sqlite"], indirect=True)
def test_the_report_lists_who_acted_on_the_campaign(
    client: TestClient, auth: dict[str, str], plan_data: dict[str, Any]
) -> None:
    created = client.post("/api/v1/campaigns", json=plan_data, headers=auth)
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    assert client.post(f"/api/v1/campaigns/{campaign_id}/pause", headers=auth).status_code == 409

    document = client.get(f"/api/v1/campaigns/{campaign_id}/report.json").json()

    assert [(a["action"], a["outcome"], a["role"]) for a in document["actions"]] == [
        ("campaign.create", "ok", "operator"),
        ("campaign.pause", "conflict", "operator"),
    ]
    html = client.get(f"/api/v1/campaigns/{campaign_id}/report.html").text
    assert "campaign.pause" in html
