"""Campaign routes and service: submit, list, show, stop/pause/resume, the token, findings."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soak.analysis.series import Detection
from soak.campaigns import service
from soak.campaigns.models import CampaignCommand, CampaignState
from soak.findings.models import Finding
from soak.findings.service import list_findings, upsert_finding
from soak.plan import parse_plan

CAMPAIGNS = "/api/v1/campaigns"


def submit(client: TestClient, auth: dict[str, str], plan: dict[str, Any]) -> dict[str, Any]:
    response = client.post(CAMPAIGNS, json=plan, headers=auth)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_submitted_plan_becomes_a_pending_campaign(
    client: TestClient, auth: dict[str, str], plan_data: dict[str, Any]
) -> None:
    created = submit(client, auth, plan_data)

    plan = parse_plan(plan_data)
    assert created["state"] == "pending"
    assert created["name"] == "nightly smoke"
    assert created["plan_digest"] == plan.digest()
    assert created["plan"] == plan.model_dump(mode="json")
    assert created["started_at"] is None and created["ended_at"] is None


def test_campaigns_are_listed_newest_first(client: TestClient, auth: dict[str, str], plan_data: dict[str, Any]) -> None:
    first = submit(client, auth, plan_data)
    second = submit(client, auth, {**plan_data, "name": "second run"})

    listed = client.get(CAMPAIGNS).json()

    assert [(c["id"], c["name"]) for c in listed] == [
        (second["id"], "second run"),
        (first["id"], "nightly smoke"),
    ]


def test_a_campaign_shows_its_progress(client: TestClient, auth: dict[str, str], plan_data: dict[str, Any]) -> None:
    created = submit(client, auth, plan_data)

    response = client.get(f"{CAMPAIGNS}/{created['id']}")

    assert response.status_code == 200
    progress = response.json()
    assert progress["campaign"]["id"] == created["id"]
    assert progress["elapsed_s"] == 0.0
    assert progress["remaining_s"] == 1800.0
    assert progress["samples_stored"] == progress["devices_reserved"] == progress["findings"] == 0
    assert client.get(f"{CAMPAIGNS}/{created['id']}/findings").json() == []
    assert client.get(f"{CAMPAIGNS}/{created['id']}/events").json() == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(plan: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = plan
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


BAD_PLANS = [
    ("workload", _set("workloads.0.name", "gemmm"), "workloads[0].name: unknown workload 'gemmm'"),
    ("negative-duration", _set("duration", "-3h"), "duration: '-3h' is negative"),
    ("precision", _set("workloads.1.precision", "fp9"), "workloads[1].precision: 'fp9' is not one of"),
    ("count-0", _set("devices.0", {"vendor": "nvidia", "count": 0}), "devices[0].count: Input should be"),
    ("no-name", lambda plan: plan.pop("name") and None, "name: required field is missing"),
    ("unknown-key", _set("priority", "high"), "priority: unknown field"),
    ("fault-device", _set("faults.0.device", "gpu3"), "faults[0].device: 'gpu3' is not a simulated device"),
    ("warmup", _set("warmup", "1h"), "warmup: 1h must be shorter than duration (30m)"),
]


def test_a_bad_plan_is_answered_422_naming_the_field(
    client: TestClient, auth: dict[str, str], plan_data: dict[str, Any], subtests: pytest.Subtests
) -> None:
    for case, change, problem in BAD_PLANS:
        with subtests.test(msg=case):
            plan = copy.deepcopy(plan_data)
            change(plan)

            response = client.post(CAMPAIGNS, json=plan, headers=auth)

            assert response.status_code == 422
            body = response.json()
            assert body["detail"] == "invalid plan"
            assert len(body["problems"]) == 1 and body["problems"][0].startswith(problem), body
    assert client.get(CAMPAIGNS).json() == []


def test_a_body_that_is_not_a_plan_is_answered_422(
    client: TestClient, auth: dict[str, str], subtests: pytest.Subtests
) -> None:
    for content, problem in [
        ("[1, 2]", "(plan): Input should be a valid dictionary"),
        ('{"name": ', "JSON decode error"),
    ]:
        with subtests.test(msg=content):
            headers = {**auth, "Content-Type": "application/json"}

            response = client.post(CAMPAIGNS, content=content, headers=headers)

            assert response.status_code == 422
            assert any(problem in line for line in response.json()["problems"]), response.json()


def test_writes_need_the_token(client: TestClient, plan_data: dict[str, Any], subtests: pytest.Subtests) -> None:
    for headers in [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic x"}]:
        with subtests.test(msg=str(headers)):
            response = client.post(CAMPAIGNS, json=plan_data, headers=headers)

            assert response.status_code == 401
            assert "bearer token" in response.json()["detail"]
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get(CAMPAIGNS).json() == []


def test_commands_need_the_token(client: TestClient, auth: dict[str, str], plan_data: dict[str, Any]) -> None:
    created = submit(client, auth, plan_data)

    response = client.post(f"{CAMPAIGNS}/{created['id']}/stop", headers={"Authorization": "Bearer wrong"})

    assert response.status_code == 401
    assert client.get(f"{CAMPAIGNS}/{created['id']}").json()["campaign"]["state"] == "pending"


def test_reads_are_open_in_development(client: TestClient) -> None:
    assert client.get(CAMPAIGNS).status_code == 200
    assert client.get("/api/v1/nodes").status_code == 200


def test_production_needs_the_token_for_reads_too(production_client: TestClient, auth: dict[str, str]) -> None:
    for path in (CAMPAIGNS, "/api/v1/nodes", "/api/v1/devices", f"{CAMPAIGNS}/1"):
        assert production_client.get(path).status_code == 401, path
        assert production_client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
    assert production_client.get(CAMPAIGNS, headers=auth).json() == []
    assert production_client.get("/healthz").status_code == 200


def test_stopping_a_pending_campaign_stops_it_at_once(
    client: TestClient, auth: dict[str, str], plan_data: dict[str, Any]
) -> None:
    created = submit(client, auth, plan_data)

    response = client.post(f"{CAMPAIGNS}/{created['id']}/stop", headers=auth)

    assert response.status_code == 200
    stopped = response.json()
    assert stopped["state"] == "stopped"
    assert stopped["reason"] == "stopped before it started"
    assert stopped["ended_at"] is not None
    again = client.post(f"{CAMPAIGNS}/{created['id']}/stop", headers=auth)
    assert again.status_code == 409
    assert again.json()["detail"] == f"campaign {created['id']} is already stopped; nothing to stop"


def test_a_pending_campaign_cannot_pause_or_resume(
    client: TestClient, auth: dict[str, str], plan_data: dict[str, Any], subtests: pytest.Subtests
) -> None:
    created = submit(client, auth, plan_data)

    for command in ("pause", "resume"):
        with subtests.test(msg=command):
            response = client.post(f"{CAMPAIGNS}/{created['id']}/{command}", headers=auth)

            assert response.status_code == 409
            assert response.json()["detail"] == f"campaign {created['id']} is pending; it cannot {command} now"
    campaign = client.get(f"{CAMPAIGNS}/{created['id']}").json()["campaign"]
    assert (campaign["state"], campaign["command"]) == ("pending", None)


def test_an_unknown_command_is_answered_422(
    client: TestClient, auth: dict[str, str], plan_data: dict[str, Any]
) -> None:
    created = submit(client, auth, plan_data)

    response = client.post(f"{CAMPAIGNS}/{created['id']}/explode", headers=auth)

    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("path.command: Input should be 'stop', 'pause' or 'resume'")


def test_an_unknown_campaign_is_404(client: TestClient, auth: dict[str, str], subtests: pytest.Subtests) -> None:
    for method, path in [("get", "/404"), ("get", "/404/findings"), ("get", "/404/events"), ("post", "/404/stop")]:
        with subtests.test(msg=f"{method} {path}"):
            response = client.request(method, CAMPAIGNS + path, headers=auth)

            assert response.status_code == 404
            assert response.json()["detail"] == "campaign 404 does not exist"


def test_commands_follow_the_campaign_state(session: Session, plan_data: dict[str, Any]) -> None:
    campaign = service.create_campaign(session=session, plan=parse_plan(plan_data))
    service.set_state(session=session, campaign=campaign, state=CampaignState.RUNNING)

    with pytest.raises(service.InvalidTransition, match="is running; it cannot resume now"):
        service.request_command(session=session, campaign_id=campaign.id, command=CampaignCommand.RESUME)
    service.request_command(session=session, campaign_id=campaign.id, command=CampaignCommand.PAUSE)
    assert service.take_command(session=session, campaign_id=campaign.id) is CampaignCommand.PAUSE
    assert service.take_command(session=session, campaign_id=campaign.id) is None

    service.set_state(session=session, campaign=campaign, state=CampaignState.PAUSED)
    with pytest.raises(service.InvalidTransition, match="is paused; it cannot pause now"):
        service.request_command(session=session, campaign_id=campaign.id, command=CampaignCommand.PAUSE)
    service.request_command(session=session, campaign_id=campaign.id, command=CampaignCommand.STOP)
    assert campaign.state == "paused" and campaign.command == "stop"

    service.set_state(session=session, campaign=campaign, state=CampaignState.STOPPED, reason="asked to")
    assert campaign.command is None and campaign.ended_at is not None and campaign.started_at is not None
    for command in CampaignCommand:
        with pytest.raises(service.InvalidTransition, match="is already stopped"):
            service.request_command(session=session, campaign_id=campaign.id, command=command)
    with pytest.raises(service.CampaignNotFound):
        service.request_command(session=session, campaign_id=campaign.id + 1, command=CampaignCommand.STOP)


def test_running_and_paused_campaigns_are_the_ones_a_restarted_controller_resumes(
    session: Session, plan_data: dict[str, Any]
) -> None:
    plan = parse_plan(plan_data)
    running = service.create_campaign(session=session, plan=plan)
    paused = service.create_campaign(session=session, plan=plan)
    service.create_campaign(session=session, plan=plan)  # pending: the scheduler starts it as usual
    service.set_state(session=session, campaign=running, state=CampaignState.RUNNING)
    service.set_state(session=session, campaign=paused, state=CampaignState.PAUSED)

    assert [campaign.id for campaign in service.orphaned_campaigns(session=session)] == [running.id, paused.id]


def _leak(device: str | None, subject: str, onset_s: float, rate: float, severity: str = "warning") -> Detection:
    return Detection(
        device=device,
        kind="memory_leak",
        subject=subject,
        severity=severity,
        onset_s=onset_s,
        detected_s=onset_s + 300.0,
        last_seen_s=onset_s + 600.0,
        explanation=f"device memory grows {rate:g} MiB/h",
        evidence={"rate_mib_per_hour": rate},
    )


@pytest.mark.parametrize("device_id", [None, "sim0"], ids=["campaign-wide", "per-device"])
def test_a_finding_is_updated_as_evidence_grows_never_duplicated(
    session: Session,
    client: TestClient,
    register: Callable[..., Any],
    plan_data: dict[str, Any],
    device_id: str | None,
) -> None:
    register("n1", ["sim0"])
    device = client.get("/api/v1/devices").json()[0]["id"] if device_id else None
    campaign = service.create_campaign(session=session, plan=parse_plan(plan_data))

    first = upsert_finding(
        session=session, campaign_id=campaign.id, device_id=device, detection=_leak(device_id, "device", 100.0, 80)
    )
    second = upsert_finding(
        session=session,
        campaign_id=campaign.id,
        device_id=device,
        detection=_leak(device_id, "device", 90.0, 120, "critical"),
    )
    upsert_finding(
        session=session, campaign_id=campaign.id, device_id=device, detection=_leak(device_id, "host", 50.0, 10)
    )

    assert second.id == first.id
    count = session.scalar(select(func.count()).select_from(Finding).where(Finding.campaign_id == campaign.id))
    assert count == 2
    findings = {f.subject: f for f in list_findings(session=session, campaign_id=campaign.id)}
    assert findings["device"].severity == "critical"
    assert findings["device"].evidence == {"rate_mib_per_hour": 120}
    assert (findings["device"].onset_s, findings["device"].detected_s) == (90.0, 390.0)
    assert findings["device"].device == ("sim0" if device_id else None)
    shown = client.get(f"{CAMPAIGNS}/{campaign.id}/findings").json()
    assert sorted(f["subject"] for f in shown) == ["device", "host"]
    assert client.get(f"{CAMPAIGNS}/{campaign.id}").json()["findings"] == 2


def test_findings_are_listed_most_severe_first_then_by_onset(
    session: Session, client: TestClient, register: Callable[..., Any], plan_data: dict[str, Any]
) -> None:
    register("n1", ["sim0"])
    campaign = service.create_campaign(session=session, plan=parse_plan(plan_data))
    for subject, onset_s, severity in [("a", 30.0, "info"), ("b", 20.0, "warning"), ("c", 40.0, "critical")]:
        upsert_finding(
            session=session,
            campaign_id=campaign.id,
            device_id=None,
            detection=_leak(None, subject, onset_s, 10, severity),
        )
    upsert_finding(session=session, campaign_id=campaign.id, device_id=None, detection=_leak(None, "d", 10.0, 10))

    shown = client.get(f"{CAMPAIGNS}/{campaign.id}/findings").json()

    assert [(f["severity"], f["subject"]) for f in shown] == [
        ("critical", "c"),
        ("warning", "d"),
        ("warning", "b"),
        ("info", "a"),
    ]
