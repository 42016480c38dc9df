"""A real node agent against a real controller on loopback: registration, delivery, outages, /metrics."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agents.agent import Agent
from agents.collectors.base import CollectContext, Collected
from agents.config import AgentSettings
from agents.exporter import serve
from agents.inbox import WorkerReport, write_report
from soak.campaigns.service import create_campaign
from soak.config import Settings
from soak.db import make_engine
from soak.embedded import EmbeddedController, free_port
from soak.migrations import upgrade
from soak.nodes.models import Device, Node
from soak.nodes.schemas import DeviceIn
from soak.plan import parse_plan
from soak.sim.device import SimReading, SimSpec, SimulatedDevice
from soak.sim.state import publish_reading
from soak.telemetry.models import Event, Sample
from soak.workloads.gemm import Gemm

TOKEN = "agent-test-token-0123456789abcdefghijkl"


class Controller(EmbeddedController):
    """The API alone (no scheduler) on 127.0.0.1, restartable, with ways to look at what it stored."""

    def __init__(self, database_url: str) -> None:
        settings = Settings(database_url=database_url, api_token=TOKEN, environment="development", port=free_port())
        super().__init__(settings, run_scheduler=False)
        self.database_url = database_url

    def use_database(self, database_url: str) -> None:
        """Serve another store from the next start() on."""
        self.database_url = database_url
        self.settings = self.settings.model_copy(update={"database_url": database_url})

    def count(self, table: type[Sample] | type[Event], *, metric: str | None = None, device: str | None = None) -> int:
        """Rows stored, optionally of one metric and one device."""
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as session:
                statement = select(func.count()).select_from(table)
                if metric is not None:
                    statement = statement.where(Sample.metric == metric)
                if device is not None:
                    statement = statement.join(Device, Device.id == table.device_id).where(Device.name == device)
                return int(session.scalar(statement) or 0)
        finally:
            engine.dispose()

    def new_campaign(self) -> int:
        """A pending campaign for worker reports to belong to."""
        engine = make_engine(self.database_url)
        try:
            with Session(engine, expire_on_commit=False) as session:
                plan = {
                    "name": "agent test",
                    "duration": "1h",
                    "devices": [{"simulated": 2}],
                    "workloads": [{"name": "gemm"}],
                }
                return create_campaign(session=session, plan=parse_plan(plan)).id
        finally:
            engine.dispose()


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    """A migrated SQLite store and a controller for it; not started (tests start it when they want it up)."""
    database_url = f"sqlite:///{tmp_path / 'controller.db'}"
    upgrade(database_url)
    controller = Controller(database_url)
    yield controller
    controller.stop()


@pytest.fixture
def agent(controller: Controller, tmp_path: Path) -> Iterator[Agent]:
    """Node n1 with two simulated accelerators and the host CPU."""
    settings = AgentSettings(
        controller_url=controller.url,
        api_token=TOKEN,
        node_name="n1",
        simulated=2,
        data_dir=tmp_path / "node",
        metrics_port=0,
    )
    agent = Agent(settings)
    yield agent
    agent.close()


def publish_sim0(agent: Agent, now_s: float) -> SimReading:
    """What a worker driving sim0 with GEMM does every tick: advance the device and publish its reading."""
    device = SimulatedDevice(SimSpec(name="sim0"), faults=[], campaign_start_s=now_s - 30, seed=3, start_s=now_s - 30)
    reading = device.advance(now_s, Gemm.sim_profile, 1.0)
    publish_reading(agent.settings.sim_state_dir, "sim0", reading)
    return reading


def report(agent: Agent, campaign_id: int, now_s: float, gflops: float) -> Path:
    """A worker's report of one interval on sim0."""
    return write_report(
        agent.settings.inbox_dir,
        WorkerReport(
            campaign_id=campaign_id,
            device="sim0",
            pid=os.getpid(),
            samples=[{"time_s": now_s, "device": "sim0", "metric": "throughput.gemm", "value": gflops}],
            events=[
                {
                    "time_s": now_s,
                    "device": "sim0",
                    "kind": "sdc",
                    "severity": "critical",
                    "message": "GEMM result differs from its reference",
                }
            ],
        ),
    )


def inbox(agent: Agent) -> list[str]:
    return sorted(path.name for path in agent.settings.inbox_dir.glob("*.json"))


def spooled(agent: Agent) -> list[str]:
    return sorted(path.name for path in agent.settings.spooled_dir.glob("*.json"))


def agent_metrics(agent: Agent) -> dict[str, float]:
    """The agent's own series by name (each has one sample: the node's)."""
    return {sample.name: sample.value for family in agent.values.collect() for sample in family.samples}


def test_the_agent_registers_and_delivers_collectors_and_worker_reports(controller: Controller, agent: Agent) -> None:
    controller.start()
    campaign_id = controller.new_campaign()
    now_s = time.time()
    publish_sim0(agent, now_s)
    report(agent, campaign_id, now_s, 812.5)

    agent.cycle(now_s)

    nodes = httpx.get(f"{controller.url}/api/v1/nodes").json()
    devices = {d["name"]: d for d in httpx.get(f"{controller.url}/api/v1/devices").json()}
    assert [n["name"] for n in nodes] == ["n1"]
    assert sorted(devices) == ["n1/cpu0", "sim0", "sim1"]
    assert devices["sim1"]["simulated"] and not devices["n1/cpu0"]["simulated"]
    assert controller.count(Sample, metric="device.temperature_c", device="sim0") == 1
    assert controller.count(Sample, metric="device.temperature_c", device="sim1") == 0
    assert controller.count(Sample, metric="host.memory_used_bytes") == 1
    # The worker's process is watched once its report names it.
    assert controller.count(Sample, metric="process.rss_bytes", device="sim0") == 1
    assert controller.count(Sample, metric="throughput.gemm", device="sim0") == 1
    assert controller.count(Event, device="sim0") == 1
    assert inbox(agent) == []
    progress = httpx.get(f"{controller.url}/api/v1/campaigns/{campaign_id}").json()
    assert (progress["samples_stored"], progress["events_stored"]) == (1, 1)

    agent.cycle(now_s + 1)

    assert controller.count(Sample, metric="throughput.gemm") == 1
    assert controller.count(Sample, metric="host.memory_used_bytes") == 2


def test_reports_wait_out_a_controller_outage_and_arrive_once(controller: Controller, agent: Agent) -> None:
    campaign_id = controller.new_campaign()
    now_s = time.time()
    publish_sim0(agent, now_s)
    report(agent, campaign_id, now_s, 800.0)

    agent.cycle(now_s)
    report(agent, campaign_id, now_s + 1, 801.0)
    agent.cycle(now_s + 1)

    assert inbox(agent) == [] and len(spooled(agent)) == 2
    health = agent_metrics(agent)
    assert health["soak_agent_spool_batches"] == 4.0  # two collector batches and two worker reports
    assert health["soak_agent_push_failures_total"] == 2.0
    assert health["soak_agent_last_push_timestamp_seconds"] == 0.0
    assert 0.0 < health["soak_agent_spool_oldest_age_seconds"] <= time.time() - now_s

    controller.start()
    agent.cycle(now_s + 2)

    assert inbox(agent) == [] and spooled(agent) == []
    health = agent_metrics(agent)
    assert health["soak_agent_spool_batches"] == 0.0
    assert health["soak_agent_spool_bytes"] == 0.0
    assert health["soak_agent_last_push_timestamp_seconds"] >= now_s
    assert controller.count(Sample, metric="throughput.gemm", device="sim0") == 2
    assert controller.count(Event, device="sim0") == 2
    assert controller.count(Sample, metric="host.memory_used_bytes") == 3

    agent.cycle(now_s + 3)

    assert controller.count(Sample, metric="throughput.gemm", device="sim0") == 2
    assert controller.count(Sample, metric="host.memory_used_bytes") == 4


def test_an_agent_restarted_during_an_outage_delivers_what_it_had_spooled(controller: Controller, agent: Agent) -> None:
    campaign_id = controller.new_campaign()
    now_s = time.time()
    report(agent, campaign_id, now_s, 800.0)
    agent.cycle(now_s)
    report(agent, campaign_id, now_s + 1, 801.0)
    agent.cycle(now_s + 1)
    agent.close()

    restarted = Agent(agent.settings)
    try:
        report(restarted, campaign_id, now_s + 2, 802.0)
        controller.start()
        restarted.cycle(now_s + 2)
    finally:
        restarted.close()

    assert inbox(restarted) == [] and spooled(restarted) == []
    assert controller.count(Sample, metric="throughput.gemm", device="sim0") == 3
    assert controller.count(Event, device="sim0") == 3
    assert controller.count(Sample, metric="host.memory_used_bytes") == 3


class SequenceCollector:
    """One node sample per cycle whose value counts the cycles."""

    name: ClassVar[str] = "sequence"

    def __init__(self) -> None:
        self.cycles = 0

    def devices(self) -> list[DeviceIn]:
        return []

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        collected = Collected()
        collected.sample(now_s, "test.sequence", self.cycles)
        self.cycles += 1
        return collected


def test_a_full_spool_drops_the_oldest_and_the_controller_is_told(controller: Controller, tmp_path: Path) -> None:
    settings = AgentSettings(
        controller_url=controller.url, api_token=TOKEN, node_name="n1", data_dir=tmp_path / "node", spool_max_batches=3
    )
    agent = Agent(settings, collectors=[SequenceCollector()])
    now_s = time.time()
    try:
        for second in range(6):
            agent.cycle(now_s + second)
        health = agent_metrics(agent)
        controller.start()
        agent.cycle(now_s + 6)
        after = agent_metrics(agent)
    finally:
        agent.close()

    # Six batches into a spool of three: the oldest three went, and a notice of the loss waits with the rest.
    assert health["soak_agent_dropped_batches_total"] == 3.0
    assert health["soak_agent_dropped_samples_total"] == 3.0
    assert health["soak_agent_spool_batches"] == 4.0
    # The seventh batch pushed out one more before the controller could take anything.
    assert after["soak_agent_dropped_batches_total"] == 4.0
    assert after["soak_agent_spool_batches"] == 0.0
    engine = make_engine(controller.database_url)
    with Session(engine) as session:
        kept = list(session.scalars(select(Sample.value).where(Sample.metric == "test.sequence").order_by(Sample.id)))
        notices = list(session.scalars(select(Event).where(Event.kind == "telemetry_dropped")))
    engine.dispose()
    assert kept == [4.0, 5.0, 6.0]
    assert [(notice.severity, notice.time_s) for notice in notices] == [("warning", now_s + 3)]
    assert "dropped the oldest 4 batch(es) (4 samples, 0 events)" in notices[0].message


def sequence_values(controller: Controller) -> list[float]:
    """The values of test.sequence the controller stored, in order."""
    engine = make_engine(controller.database_url)
    with Session(engine) as session:
        values = list(session.scalars(select(Sample.value).where(Sample.metric == "test.sequence").order_by(Sample.id)))
    engine.dispose()
    return values


def test_a_backlog_drains_in_requests_of_several_batches_each_stored_once(
    controller: Controller, tmp_path: Path
) -> None:
    # An interval this short leaves time for one request per cycle: what one cycle delivers, one request carried.
    settings = AgentSettings(
        controller_url=controller.url,
        api_token=TOKEN,
        node_name="n1",
        data_dir=tmp_path / "node",
        interval_s=0.001,
        push_max_batches=4,
    )
    agent = Agent(settings, collectors=[SequenceCollector()])
    now_s = time.time()
    depths = []
    try:
        for second in range(10):
            agent.cycle(now_s + second)
        controller.start()
        for second in range(10, 14):
            agent.cycle(now_s + second)
            depths.append(agent.spool.stats().batches)
    finally:
        agent.close()

    # Each cycle adds a batch and one request takes four: 11 - 4, then 3 fewer a cycle.
    assert depths == [7, 4, 1, 0]
    assert sequence_values(controller) == [float(value) for value in range(14)]


def test_an_agent_sends_fewer_batches_per_request_when_the_controller_takes_fewer(
    controller: Controller, tmp_path: Path
) -> None:
    controller.settings = controller.settings.model_copy(update={"max_request_batches": 2})
    settings = AgentSettings(
        controller_url=controller.url, api_token=TOKEN, node_name="n1", data_dir=tmp_path / "node", push_max_batches=8
    )
    agent = Agent(settings, collectors=[SequenceCollector()])
    now_s = time.time()
    try:
        for second in range(8):
            agent.cycle(now_s + second)
        controller.start()
        for second in range(8, 20):
            agent.cycle(now_s + second)
            if agent.spool.stats().batches == 0:
                break
        spool_batches = agent.spool.stats().batches
    finally:
        agent.close()

    assert spool_batches == 0
    assert sorted(sequence_values(controller)) == [float(value) for value in range(second + 1)]
    assert list(settings.inbox_dir.glob("*.bad")) == []


def test_the_agent_registers_again_when_the_controller_forgets_it(
    controller: Controller, agent: Agent, tmp_path: Path
) -> None:
    controller.start()
    now_s = time.time()
    agent.cycle(now_s)
    controller.stop()
    # A fresh store: the controller no longer knows node n1.
    controller.use_database(f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade(controller.database_url)
    controller.start()

    agent.cycle(now_s + 1)

    engine = make_engine(controller.database_url)
    with Session(engine) as session:
        assert list(session.scalars(select(Node.name))) == ["n1"]
    engine.dispose()
    assert controller.count(Sample, metric="host.memory_used_bytes") == 1


class BrokenCollector:
    """A collector whose source fails every time."""

    name: ClassVar[str] = "broken"

    def devices(self) -> list[DeviceIn]:
        return []

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        raise OSError("the vendor tool hung up")


def test_the_agent_metrics_show_device_values_and_collector_health(controller: Controller, agent: Agent) -> None:
    controller.start()
    campaign_id = controller.new_campaign()
    agent.collectors.append(BrokenCollector())
    now_s = time.time()
    reading = publish_sim0(agent, now_s)
    report(agent, campaign_id, now_s, 812.5)
    agent.cycle(now_s)
    server = serve(agent.values, host="127.0.0.1", port=0)
    try:
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics").text
    finally:
        server.shutdown()
        server.server_close()

    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(name: str, **labels: str) -> float:
        [found] = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
        return float(found)

    sim0 = {"node": "n1", "device": "sim0", "index": "0", "vendor": "simulated", "uuid": "SIM-n1-00"}
    assert value("soak_device_temperature_celsius", **sim0) == pytest.approx(reading.temperature_c)
    assert value("soak_device_sm_clock_hertz", **sim0) == pytest.approx(reading.sm_clock_mhz * 1e6)
    assert value("soak_workload_throughput", **sim0, workload="gemm", campaign=str(campaign_id)) == 812.5
    assert value("soak_host_memory_used_bytes", node="n1", device="") > 0
    assert value("soak_agent_collector_success", collector="host", node="n1") == 1.0
    assert value("soak_agent_collector_success", collector="simulated", node="n1") == 1.0
    assert value("soak_agent_collector_success", collector="broken", node="n1") == 0.0
    assert value("soak_agent_spool_batches", node="n1") == 0.0
    assert value("soak_agent_spool_oldest_age_seconds", node="n1") == 0.0
    assert value("soak_agent_last_push_timestamp_seconds", node="n1") >= now_s
    assert value("soak_agent_push_failures_total", node="n1") == 0.0
    assert value("soak_agent_dropped_batches_total", node="n1") == 0.0
    # A failing collector costs its own data only.
    assert controller.count(Sample, metric="device.temperature_c", device="sim0") == 1


class XidSource:
    """A collector that reports one XID 79 on sim0, as NVML's listener or the kernel log would."""

    def __init__(self, name: str, delay_s: float) -> None:
        self.name = name
        self._delay_s = delay_s

    def devices(self) -> list[DeviceIn]:
        return []

    def collect(self, now_s: float, context: CollectContext) -> Collected:
        event = {"time_s": now_s + self._delay_s, "device": "sim0", "kind": "driver_error", "severity": "critical"}
        return Collected(events=[{**event, "code": 79, "message": f"XID 79 from {self.name}", "raw": ""}])


def test_one_xid_seen_by_two_sources_is_stored_once(controller: Controller, agent: Agent) -> None:
    controller.start()
    agent.collectors += [XidSource("nvml", 0.0), XidSource("kernel_log", 0.8)]
    now_s = time.time()
    agent.cycle(now_s)
    assert controller.count(Event) == 1
    agent.cycle(now_s + 60)  # the same code a minute later is a new error
    assert controller.count(Event) == 2
    xids = [s for family in agent.values.collect() for s in family.samples if s.name == "soak_device_xid_errors_total"]
    assert [(s.labels["xid"], s.value) for s in xids] == [("79", 2.0)]
