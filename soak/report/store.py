"""What the report reads from the store, once: the campaign, its devices, summaries, series, runs and events."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from soak.campaigns.models import Campaign, CampaignState, WorkloadRun
from soak.findings.schemas import FindingOut
from soak.findings.service import list_findings
from soak.nodes.models import Device, Node
from soak.plan import Plan, parse_plan
from soak.telemetry.models import Event
from soak.telemetry.rollups import roll_up_all
from soak.telemetry.series import ROUND_STEPS_S, read_series, round_step_s
from soak.telemetry.service import list_events
from soak.telemetry.summaries import MetricSummary, campaign_summaries


@dataclass(frozen=True)
class Curve:
    """One metric of one device at the report's step: step start times and step means (NaN-free)."""

    time_s: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]

    def after(self, start_s: float) -> Curve:
        """The steps starting at or after start_s."""
        keep = self.time_s >= start_s
        return Curve(self.time_s[keep], self.mean[keep])

    def __len__(self) -> int:
        return int(self.time_s.size)


@dataclass
class CampaignData:
    """Everything about one campaign the report needs, read once so that every section agrees."""

    campaign: Campaign
    plan: Plan
    start_s: float
    end_s: float
    step_s: float
    # The series start at a whole step before start_s, so that minute and hour steps are read from the rollups.
    series_from_s: float
    devices: list[tuple[Device, Node]]
    summaries: dict[str, dict[str, MetricSummary]]
    runs: dict[str, list[WorkloadRun]]
    events: list[Event]
    findings: list[FindingOut]
    _session: Session
    _curves: dict[tuple[str, str], Curve] = field(default_factory=dict)

    @property
    def interim(self) -> bool:
        """Whether the campaign can still change (running, paused or pending)."""
        return not CampaignState(self.campaign.state).finished

    @property
    def warmup_end_s(self) -> float:
        """End of the campaign's warm-up, after which statistics count."""
        return self.start_s + self.plan.warmup.total_seconds()

    def metrics(self, device: str, prefix: str = "") -> list[str]:
        """Names of a device's metrics (from the hour rollups) starting with prefix, sorted."""
        return sorted(name for name in self.summaries.get(device, {}) if name.startswith(prefix))

    def summary(self, device: str, metric: str) -> MetricSummary | None:
        """A device metric's campaign summary, or None when it was never recorded."""
        return self.summaries.get(device, {}).get(metric)

    def curve(self, device: str, metric: str) -> Curve:
        """A device metric at the report's step over the whole campaign (through the rollups)."""
        key = (device, metric)
        if key not in self._curves:
            if self.summary(device, metric) is None:
                self._curves[key] = Curve(np.empty(0), np.empty(0))
            else:
                series = read_series(
                    session=self._session,
                    campaign_id=self.campaign.id,
                    device=device,
                    metric=metric,
                    from_s=self.series_from_s,
                    to_s=self.end_s,
                    step_s=self.step_s,
                    sample_interval_s=self.plan.sample_interval.total_seconds(),
                )
                time_s = np.array([point.time_s for point in series.points], dtype=np.float64)
                mean = np.array([point.mean for point in series.points], dtype=np.float64)
                finite = np.isfinite(mean)
                self._curves[key] = Curve(time_s[finite], mean[finite])
        return self._curves[key]

    def device_events(self, device_id: int) -> list[Event]:
        """A device's own events, oldest first."""
        return [event for event in self.events if event.device_id == device_id]

    def software(self, device_id: int) -> dict[str, str]:
        """The software stack a device's worker last reported (torch, the vendor extension, the stack)."""
        reported: dict[str, str] = {}
        for event in self.device_events(device_id):
            if event.kind == "software_stack":
                try:
                    versions = json.loads(event.raw)
                except ValueError:
                    continue
                if isinstance(versions, dict):
                    reported = {str(key): str(value) for key, value in versions.items()}
        return reported


def report_step_s(range_s: float, sample_interval_s: float) -> float:
    """The plots' step: a round one giving at most about a thousand points, and longer than the sampling interval,
    so that every series is averaged onto the same grid (raw samples of different sources never share a time)."""
    wanted_s = round_step_s(range_s)
    longer = [step for step in ROUND_STEPS_S if step >= wanted_s and step > sample_interval_s]
    return float(longer[0]) if longer else max(wanted_s, 2.0 * sample_interval_s)


def load_campaign(*, session: Session, campaign: Campaign) -> CampaignData:
    """Read a campaign for its report; the hour rollups are brought up to date first."""
    roll_up_all(session=session)
    plan = parse_plan(campaign.plan)
    start_s = campaign.started_at.timestamp() if campaign.started_at else campaign.created_at.timestamp()
    # A running campaign is reported up to now.
    end_s = campaign.ended_at.timestamp() if campaign.ended_at is not None else max(time.time(), start_s + 1.0)
    step_s = report_step_s(end_s - start_s, plan.sample_interval.total_seconds())
    device_ids = select(WorkloadRun.device_id).where(WorkloadRun.campaign_id == campaign.id).distinct()
    statement = (
        select(Device, Node)
        .join(Node, Device.node_id == Node.id)
        .where(Device.id.in_(device_ids) | (Device.campaign_id == campaign.id))
        .order_by(Node.name, Device.index, Device.name)
    )
    devices = [(device, node) for device, node in session.execute(statement)]
    summaries: dict[str, dict[str, MetricSummary]] = defaultdict(dict)
    for summary in campaign_summaries(session=session, campaign_id=campaign.id):
        summaries[summary.device][summary.metric] = summary
    names = {device.id: device.name for device, _ in devices}
    runs: dict[str, list[WorkloadRun]] = defaultdict(list)
    for run in session.scalars(
        select(WorkloadRun).where(WorkloadRun.campaign_id == campaign.id).order_by(WorkloadRun.started_s)
    ):
        runs[names.get(run.device_id, str(run.device_id))].append(run)
    events = list_events(session=session, campaign_id=campaign.id, limit=None)
    return CampaignData(
        campaign=campaign,
        plan=plan,
        start_s=start_s,
        end_s=end_s,
        step_s=step_s,
        series_from_s=start_s - start_s % step_s if step_s % 60 == 0 else start_s,
        devices=devices,
        summaries=dict(summaries),
        runs=dict(runs),
        events=events,
        findings=list_findings(session=session, campaign_id=campaign.id),
        _session=session,
    )
