"""Delivery without loss: a real agent process pushes numbered worker reports to a real controller that is
stopped and restarted, and is itself killed and restarted during the outage; every report is stored once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from agents.inbox import WorkerReport, write_report
from soak.campaigns.service import create_campaign
from soak.config import Settings
from soak.db import make_engine
from soak.embedded import EmbeddedController, free_port, start_agent, stop_agents
from soak.plan import parse_plan
from soak.telemetry.models import Event, Sample

TOKEN = "agent-delivery-token-0123456789abcdefghij"
NODE = "n1"
GIVE_UP_S = 90.0


class ReportWriter:
    """A worker on sim0 that writes a report every few milliseconds: sample n has value n, every fifth an event."""

    def __init__(self, inbox_dir: Path, campaign_id: int) -> None:
        self.written = 0
        self._inbox_dir = inbox_dir
        self._campaign_id = campaign_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="report-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        """Stop writing; returns how many reports were written."""
        self._stop.set()
        self._thread.join(timeout=10)
        return self.written

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            number, now_s = self.written, time.time()
            events = [] if number % 5 else [{"time_s": now_s, "device": "sim0", "kind": "sdc", "code": number}]
            write_report(
                self._inbox_dir,
                WorkerReport(
                    campaign_id=self._campaign_id,
                    device="sim0",
                    pid=os.getpid(),
                    samples=[{"time_s": now_s, "device": "sim0", "metric": "throughput.gemm", "value": number}],
                    events=[{**event, "severity": "critical", "message": f"report {number}"} for event in events],
                ),
            )
            self.written += 1


class Store:
    """Looks at what the controller stored."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)

    def numbered_samples(self) -> int:
        with Session(self.engine) as session:
            statement = select(func.count()).select_from(Sample).where(Sample.metric == "throughput.gemm")
            return int(session.scalar(statement) or 0)

    def copies(self, column: InstrumentedAttribute[Any], *where: ColumnElement[bool]) -> dict[float, int]:
        """How many times each value of `column` was stored."""
        with Session(self.engine) as session:
            rows = session.execute(select(column, func.count()).where(*where).group_by(column))
            return {float(value): int(count) for value, count in rows}

    def new_campaign(self) -> int:
        with Session(self.engine, expire_on_commit=False) as session:
            plan = {
                "name": "delivery",
                "duration": "1h",
                "devices": [{"simulated": 1}],
                "workloads": [{"name": "gemm"}],
            }
            return create_campaign(session=session, plan=parse_plan(plan)).id


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline_s = time.time() + GIVE_UP_S
    while not condition():
        if time.time() > deadline_s:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.engine.dispose()


def test_a_controller_outage_and_an_agent_crash_lose_and_duplicate_nothing(
    database_url: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=database_url, api_token=TOKEN, environment="development", port=free_port())
    controller = EmbeddedController(settings, run_scheduler=False)
    controller.start()
    monkeypatch.setenv("SOAK_AGENT_INTERVAL_S", "0.2")
    node_dir = tmp_path / NODE
    logs = [(tmp_path / f"agent-{n}.log").open("wb") for n in (1, 2)]

    def agent(log_index: int) -> subprocess.Popen[bytes]:
        return start_agent(
            controller_url=controller.url,
            token=TOKEN,
            node=NODE,
            data_dir=node_dir,
            simulated=1,
            output=logs[log_index],
        )

    writer = ReportWriter(node_dir / "inbox", store.new_campaign())
    agents = [agent(0)]
    try:
        writer.start()
        wait_for(lambda: store.numbered_samples() >= 20, "the first reports to arrive")

        controller.stop()
        outage_start_s = time.time()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{controller.url}/api/v1/nodes")
        wait_for(lambda: len(list((node_dir / "spooled").glob("*.json"))) >= 10, "reports to wait in the spool")
        agents[0].send_signal(signal.SIGKILL)  # no chance to flush anything: the spool must already hold it
        agents[0].wait(timeout=30)
        written_by_then = writer.written
        agents.append(agent(1))
        time.sleep(2.0)
        outage_end_s = time.time()
        controller = EmbeddedController(settings, run_scheduler=False)
        controller.start()
        time.sleep(1.0)
        written = writer.stop()

        wait_for(lambda: store.numbered_samples() >= written, f"all {written} reports to be stored")
        wait_for(lambda: not list(node_dir.glob("*/*.json")), "the inbox and the spool to empty")
    finally:
        writer.stop()
        stop_agents(agents[1:])
        controller.stop()
        for log in logs:
            log.close()

    samples = store.copies(Sample.value, Sample.metric == "throughput.gemm")
    assert written > written_by_then > 20
    assert sorted(samples) == list(range(written)), "lost reports"
    assert set(samples.values()) == {1}, "duplicated reports"
    events = store.copies(Event.code, Event.kind == "sdc")
    assert events == dict.fromkeys(range(0, written, 5), 1)
    # What the collectors read while the controller was away arrived too, once per reading.
    host_times = store.copies(
        Sample.time_s, Sample.metric == "host.memory_total_bytes", Sample.time_s.between(outage_start_s, outage_end_s)
    )
    assert host_times and set(host_times.values()) == {1}
