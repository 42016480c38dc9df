"""Imports a telemetry file into a campaign of its own: streamed, checked line by line, stored in batches.

An imported campaign is a completed campaign whose plan says it was imported (its description) and covers the
data's time span; its devices are registered under the file's nodes and held by the campaign, so that no plan
can be placed on them, and one workload run per device spans its data, which is what the detectors read. A
sample (device, metric, time) the campaign already holds is never stored twice, so a file imported again, an
overlapping export, or an import resumed after an interruption stores only what is new.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soak.campaigns.models import Campaign, CampaignState, WorkloadRun
from soak.nodes.models import Device, Node
from soak.offline.formats import FileFormat
from soak.offline.lines import DeviceFacts, ImportRefused, Line, Problem
from soak.offline.long_csv import LongCsv
from soak.offline.nvidia_smi_csv import MAX_INDEX_DIGITS, NvidiaSmiCsv
from soak.plan import Plan, PlanError, parse_plan
from soak.telemetry.metric_names import metric_ids_known
from soak.telemetry.models import Sample
from soak.telemetry.schemas import NAME_PATTERN
from soak.telemetry.writer import SampleRow, write_samples

log = logging.getLogger(__name__)

IMPORTED_MARKER = "Imported telemetry"
IMPORTED_DESCRIPTION = (
    f"{IMPORTED_MARKER}: read from files with `soak import`, not collected by soak. What ran, its warm-up and "
    "its slots are unknown, so each device's whole record is analysed as one slot, without warm-up."
)
IMPORTED_RUN = "the imported record"
BATCH_SAMPLES = 50_000
PROBLEMS_KEPT = 50
MIN_DURATION_S = 10
_NAME = re.compile(NAME_PATTERN)


@dataclass
class ImportReport:
    """What an import stored, what it skipped, and why."""

    campaign_id: int | None = None
    campaign_name: str = ""
    created: bool = False
    rows_read: int = 0
    rows_rejected: int = 0
    values_rejected: int = 0
    samples_stored: int = 0
    samples_already_stored: int = 0
    problems: list[Problem] = field(default_factory=list)
    problems_total: int = 0
    devices: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    ignored_columns: list[str] = field(default_factory=list)
    first_s: float | None = None
    last_s: float | None = None
    elapsed_s: float = 0.0

    @property
    def rows_imported(self) -> int:
        """Lines whose samples were kept (some of their values may have been rejected)."""
        return self.rows_read - self.rows_rejected


class _Pending(NamedTuple):
    node_id: int
    device_id: int | None
    metric: str
    time_s: float
    value: float


def imported_plan(name: str, start_s: float, end_s: float, devices_per_node: dict[str, int]) -> Plan:
    """A valid plan for imported data: one slot covering it, no warm-up, the nodes and device counts it holds."""
    duration_s = max(math.ceil(end_s - start_s), MIN_DURATION_S)
    return parse_plan(
        {
            "name": name,
            "description": IMPORTED_DESCRIPTION,
            "duration": duration_s,
            "warmup": 0,
            "sample_interval": 1,
            "rotation": duration_s,
            "slot_warmup": 0,
            "devices": [
                {"nodes": [node], "count": count} if count else {"nodes": [node]}
                for node, count in sorted(devices_per_node.items())
            ],
            # A plan needs one; nothing ran under soak, and the description says so.
            "workloads": [{"name": "idle"}],
        }
    )


def is_imported(campaign: Campaign) -> bool:
    """Whether a campaign holds imported telemetry rather than a campaign soak ran."""
    return str(campaign.plan.get("description", "")).startswith(IMPORTED_MARKER)


def import_file(
    *,
    session: Session,
    path: Path,
    campaign_name: str,
    file_format: FileFormat,
    node: str | None = None,
    batch_samples: int = BATCH_SAMPLES,
) -> ImportReport:
    """Import a file into the imported campaign `campaign_name`, creating it on the first sample stored."""
    started = time.perf_counter()
    try:
        imported_plan(campaign_name, 0.0, 0.0, {"node": 0})
    except PlanError as error:
        raise ImportRefused(f"--campaign {campaign_name!r}: {'; '.join(error.problems)}") from None
    existing = session.scalar(select(Campaign).where(Campaign.name == campaign_name).order_by(Campaign.id.desc()))
    if existing is not None and not is_imported(existing):
        raise ImportRefused(
            f"--campaign: {campaign_name!r} is campaign {existing.id}, which soak ran; imported telemetry goes "
            "into a campaign of its own: choose another name"
        )
    if file_format is FileFormat.LONG:
        if node is not None:
            raise ImportRefused("--node: the long format names the node on every line; leave --node out")
        parser: LongCsv | NvidiaSmiCsv = LongCsv()
    else:
        node_name = node if node is not None else path.stem
        # Its devices are named `{node}/cuda{index}`, which must be a valid name too.
        if _NAME.match(node_name) is None or _NAME.match(f"{node_name}/cuda{'9' * MAX_INDEX_DIGITS}") is None:
            where = "--node" if node is not None else f"--node (default: the file name {path.name!r})"
            raise ImportRefused(
                f"{where}: {node_name!r} is not a node name: letters, digits and _ . : / - only, up to "
                f"{128 - len('/cuda') - MAX_INDEX_DIGITS} characters"
            )
        parser = NvidiaSmiCsv(node_name)
    importer = _Importer(session, campaign_name, existing, f"{path.name} ({file_format.value})", batch_samples)
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            importer.run(parser.parse(_rows(handle, importer.report)))
    except OSError as error:
        raise ImportRefused(f"{path}: cannot read it: {error.strerror}") from None
    importer.finish()
    importer.report.ignored_columns = parser.ignored_columns
    importer.report.elapsed_s = time.perf_counter() - started
    return importer.report


def _rows(handle: Iterable[str], report: ImportReport) -> Iterator[tuple[int, list[str]]]:
    """CSV rows with the number of the line each ends on; a file the CSV reader cannot go on with ends there."""
    # A NUL byte (a file cut by a crash) would stop the CSV reader; without it the line fails its checks alone.
    reader = csv.reader((line.replace("\0", "") for line in handle), skipinitialspace=True)
    try:
        for cells in reader:
            yield reader.line_num, cells
    except csv.Error as error:
        problem = Problem(reader.line_num, "(file)", f"{error}; the rest of the file was not read")
        report.problems_total += 1
        report.problems.append(problem)


class _Importer:
    """Keeps the registrations, the batch being filled and the spans of one import."""

    def __init__(
        self, session: Session, campaign_name: str, campaign: Campaign | None, source: str, batch_samples: int
    ) -> None:
        self.session = session
        self.campaign = campaign
        self.source = source
        self.batch_samples = batch_samples
        self.report = ImportReport(
            campaign_id=campaign.id if campaign else None, campaign_name=campaign_name, created=campaign is None
        )
        self.nodes: dict[str, int] = {}
        self.ids: dict[tuple[str, str | None], tuple[int, int | None]] = {}
        self.devices: dict[str, tuple[int, str]] = {}
        self.pending: list[_Pending] = []
        self.spans: dict[tuple[str, str], tuple[float, float]] = {}
        self.memory_total_bytes: dict[str, float] = {}

    def run(self, lines: Iterable[Line]) -> None:
        """Check and queue every line, storing a batch whenever one is full."""
        for line in lines:
            self._add(line)
            if len(self.pending) >= self.batch_samples:
                self._flush()

    def _problem(self, problem: Problem) -> None:
        self.report.problems_total += 1
        if len(self.report.problems) < PROBLEMS_KEPT:
            self.report.problems.append(problem)

    def _add(self, line: Line) -> None:
        report = self.report
        report.rows_read += 1
        if line.problems:
            for problem in line.problems:
                self._problem(problem)
            if line.rejected:
                report.rows_rejected += 1
                return
            report.values_rejected += len(line.problems)
        if not line.values:
            return
        ids = self.ids.get((line.node, line.device))
        if ids is None:
            ids = self._register(line)
            if ids is None:
                report.rows_rejected += 1
                return
        node_id, device_id = ids
        time_s = line.time_s
        if report.first_s is None or time_s < report.first_s:
            report.first_s = time_s
        if report.last_s is None or time_s > report.last_s:
            report.last_s = time_s
        self.pending.extend(_Pending(node_id, device_id, metric, time_s, value) for metric, value in line.values)
        if line.device is None:
            return
        self._extend(line.device, IMPORTED_RUN, time_s)
        for metric, value in line.values:
            if metric.startswith("throughput."):
                self._extend(line.device, metric.removeprefix("throughput."), time_s)
            elif metric == "device.memory_total_bytes":
                self.memory_total_bytes[line.device] = max(value, self.memory_total_bytes.get(line.device, 0.0))

    def _register(self, line: Line) -> tuple[int, int | None] | None:
        """Node and device ids of a line, registering them when new; None when the device is another node's."""
        campaign = self._campaign(line)
        node_id = self._node_id(line.node)
        if line.device is None:
            ids: tuple[int, int | None] = (node_id, None)
        else:
            device_id, owner = self._device(line.device, line.node, line.facts, campaign.id)
            if owner != line.node:
                self._problem(
                    Problem(
                        line.number,
                        "device",
                        f"{line.device!r} is registered to node {owner!r}, not {line.node!r}; "
                        "device names must be unique in the fleet",
                    )
                )
                return None
            ids = (node_id, device_id)
        self.ids[line.node, line.device] = ids
        return ids

    def _extend(self, device: str, workload: str, time_s: float) -> None:
        first_s, last_s = self.spans.get((device, workload), (time_s, time_s))
        self.spans[device, workload] = (min(first_s, time_s), max(last_s, time_s))

    def _campaign(self, line: Line) -> Campaign:
        if self.campaign is None:
            plan = imported_plan(self.report.campaign_name, line.time_s, line.time_s, {line.node: 0})
            moment = datetime.fromtimestamp(line.time_s, UTC)
            self.campaign = Campaign(
                name=plan.name,
                plan=plan.model_dump(mode="json"),
                plan_digest=plan.digest(),
                state=CampaignState.COMPLETED,
                reason=f"importing {self.source}",
                started_at=moment,
                ended_at=moment,
            )
            self.session.add(self.campaign)
            self.session.commit()
            self.report.campaign_id = self.campaign.id
        return self.campaign

    def _node_id(self, name: str) -> int:
        node_id = self.nodes.get(name)
        if node_id is None:
            node = self.session.scalar(select(Node).where(Node.name == name))
            if node is None:
                # No agent, no inbox: the node is known only from the file.
                node = Node(name=name, hostname=name, inbox_dir="", sim_state_dir="")
                self.session.add(node)
                self.session.flush()
            node_id = self.nodes[name] = node.id
            self.report.nodes.add(name)
        return node_id

    def _device(self, name: str, node: str, facts: DeviceFacts | None, campaign_id: int) -> tuple[int, str]:
        known = self.devices.get(name)
        if known is None:
            device = self.session.scalar(select(Device).where(Device.name == name))
            if device is None:
                facts = facts or DeviceFacts(index=0, backend="unknown", vendor="unknown", model="unknown")
                device = Device(
                    node_id=self.nodes[node],
                    name=name,
                    backend=facts.backend,
                    index=facts.index,
                    vendor=facts.vendor,
                    model=facts.model[:128],
                    uuid=facts.uuid,
                    serial=facts.serial,
                    bus_id=facts.bus_id,
                    driver_version=facts.driver_version,
                    firmware_version=facts.firmware_version,
                    # Held by the imported campaign for good: a device known only from a file cannot run a plan.
                    campaign_id=campaign_id,
                )
                self.session.add(device)
                self.session.flush()
                owner = node
            else:
                owner = self.session.get_one(Node, device.node_id).name
            known = self.devices[name] = (device.id, owner)
            if owner == node:
                self.report.devices.add(name)
        return known

    def _flush(self) -> None:
        """Store the queued samples the campaign does not hold yet, in one transaction."""
        if not self.pending or self.campaign is None:
            return
        campaign_id = self.campaign.id
        pending, self.pending = self.pending, []
        # The rows ingest() stores for an agent's batch, checked against the same patterns (telemetry.schemas)
        # rather than validated again, which is several times faster; written by ingest()'s writer.
        rows: list[SampleRow] = [
            (campaign_id, sample.node_id, sample.device_id, sample.metric, sample.time_s, sample.value)
            for sample in self._not_yet_stored(pending, campaign_id)
        ]
        write_samples(session=self.session, rows=rows)
        self.session.commit()
        self.report.samples_stored += len(rows)
        log.info("%s: %d lines read, %d samples stored", self.source, self.report.rows_read, self.report.samples_stored)

    def _not_yet_stored(self, pending: list[_Pending], campaign_id: int) -> list[_Pending]:
        """The samples neither stored in the campaign nor earlier in this batch; one indexed query per series."""
        series: dict[tuple[int, int | None, str], list[_Pending]] = {}
        for sample in pending:
            series.setdefault((sample.node_id, sample.device_id, sample.metric), []).append(sample)
        ids = metric_ids_known(session=self.session, names={metric for _, _, metric in series})
        fresh: list[_Pending] = []
        for (node_id, device_id, metric), samples in series.items():
            stored: set[float] = set()
            # A metric no sample ever had has none stored.
            if metric in ids:
                times = [sample.time_s for sample in samples]
                statement = select(Sample.time_s).where(
                    Sample.campaign_id == campaign_id,
                    Sample.device_id.is_(None) if device_id is None else Sample.device_id == device_id,
                    Sample.metric_id == ids[metric],
                    Sample.node_id == node_id,
                    Sample.time_s >= min(times),
                    Sample.time_s <= max(times),
                )
                stored.update(self.session.scalars(statement))
            for sample in samples:
                if sample.time_s in stored:
                    self.report.samples_already_stored += 1
                    continue
                stored.add(sample.time_s)
                fresh.append(sample)
        return fresh

    def finish(self) -> None:
        """Store the last batch, then fit the campaign's runs, devices, plan and time span to what it holds."""
        self._flush()
        campaign = self.campaign
        if campaign is None:
            return
        session = self.session
        runs = {
            (run.device_id, run.workload): run
            for run in session.scalars(select(WorkloadRun).where(WorkloadRun.campaign_id == campaign.id))
        }
        for (device, workload), (first_s, last_s) in self.spans.items():
            device_id = self.devices[device][0]
            run = runs.get((device_id, workload))
            if run is None:
                session.add(
                    WorkloadRun(
                        campaign_id=campaign.id,
                        device_id=device_id,
                        workload=workload,
                        started_s=first_s,
                        ended_s=last_s,
                        summary={"imported": self.source},
                    )
                )
            else:
                run.started_s = min(run.started_s, first_s)
                run.ended_s = max(run.ended_s if run.ended_s is not None else last_s, last_s)
        for name, total_bytes in self.memory_total_bytes.items():
            registered = session.get_one(Device, self.devices[name][0])
            if registered.memory_total_bytes is None:
                registered.memory_total_bytes = int(total_bytes)
        session.flush()
        self._fit_campaign(campaign)
        session.commit()

    def _fit_campaign(self, campaign: Campaign) -> None:
        report = self.report
        per_node = dict(
            self.session.execute(
                select(Node.name, func.count(func.distinct(WorkloadRun.device_id)))
                .join(Device, WorkloadRun.device_id == Device.id)
                .join(Node, Device.node_id == Node.id)
                .where(WorkloadRun.campaign_id == campaign.id)
                .group_by(Node.name)
            ).all()
        )
        for selector in campaign.plan.get("devices", []):
            for node in selector.get("nodes") or []:
                per_node.setdefault(node, 0)
        for node in report.nodes:
            per_node.setdefault(node, 0)
        if campaign.started_at is not None and report.first_s is not None:
            campaign.started_at = min(campaign.started_at, datetime.fromtimestamp(report.first_s, UTC))
        if campaign.ended_at is not None and report.last_s is not None:
            campaign.ended_at = max(campaign.ended_at, datetime.fromtimestamp(report.last_s, UTC))
        start_s = campaign.started_at.timestamp() if campaign.started_at else 0.0
        end_s = campaign.ended_at.timestamp() if campaign.ended_at else start_s
        plan = imported_plan(campaign.name, start_s, end_s, per_node)
        campaign.plan = plan.model_dump(mode="json")
        campaign.plan_digest = plan.digest()
        campaign.state = CampaignState.COMPLETED
        campaign.reason = (
            f"imported {self.source}: {report.rows_read:,} lines, {report.samples_stored:,} samples stored, "
            f"{report.samples_already_stored:,} already stored, {report.rows_rejected:,} lines rejected"
        )
