"""Detection on a thread of its own: passes run without the runner asking, a failed one is retried, and the final
pass completes before `finish` returns."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session

from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.store import store_fleet
from soak.db import make_engine, session_factory
from soak.findings.models import Finding
from soak.findings.service import list_findings
from soak.migrations import upgrade
from soak.plan import Plan, parse_plan
from soak.scheduler.detection import DetectionThread, detect_interval_s

# Two devices for a few hours, one with a fault: enough for findings, stored in about a second.
SPEC = FleetSpec(seed=3, devices=2, devices_per_node=2, days=0.1, sample_interval_s=60.0, warmup_s=600.0)
WAIT_S = 60.0


def findings_after(session: Session, campaign_id: int) -> int:
    session.expire_all()
    return len(list_findings(session=session, campaign_id=campaign_id))


def wait_for(condition: object, what: str) -> None:
    give_up_s = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < give_up_s, f"no {what} within {WAIT_S:.0f} s"
        time.sleep(0.05)


def test_passes_run_on_their_own_thread_and_a_failed_one_is_retried(
    blank_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(blank_database_url)
    sessions = session_factory(engine)
    plan = parse_plan({"name": "t", "duration": "2h", "devices": {"simulated": 2}, "workloads": [{"name": "gemm"}]})
    detection = DetectionThread(campaign_id=1, sessions=sessions, plan=plan, start_s=SPEC.start_s, interval_s=0.05)
    caplog.set_level(logging.ERROR, logger="soak.scheduler.detection")
    try:
        detection.start()
        # The store is not migrated yet: every pass fails, is logged, and the thread goes on.
        wait_for(lambda: len(caplog.records) >= 2, "logged failure")
        upgrade(blank_database_url)
        with sessions() as session:
            campaign = store_fleet(session=session, spec=SPEC, name="thread")
            assert campaign.id == 1
            assert findings_after(session, campaign.id) > 0
            session.execute(delete(Finding))
            session.commit()
            # Nobody calls a pass: the thread's next one stores the findings again.
            wait_for(lambda: findings_after(session, campaign.id) > 0, "pass of the thread")
    finally:
        detection.stop(wait=True)
        engine.dispose()


def test_finish_runs_the_final_pass_after_the_thread_has_ended(session: Session) -> None:
    campaign = store_fleet(session=session, spec=SPEC, name="final")
    session.execute(delete(Finding))
    session.commit()
    plan = parse_plan(campaign.plan)
    sessions = session_factory(session.get_bind())  # type: ignore[arg-type]
    # An interval no test waits for: only the final pass can store anything.
    detection = DetectionThread(
        campaign_id=campaign.id, sessions=sessions, plan=plan, start_s=SPEC.start_s, interval_s=3600.0
    )
    detection.start()

    assert detection.finish()

    assert findings_after(session, campaign.id) > 0


@pytest.mark.parametrize(
    ("duration", "expected_s"),
    [(timedelta(minutes=4), 10.0), (timedelta(hours=6), 74.6875), (timedelta(days=14), 300.0)],
)
def test_passes_come_once_a_block_at_most_every_configured_interval(
    plan_data: dict[str, object], duration: timedelta, expected_s: float
) -> None:
    plan: Plan = parse_plan({**plan_data, "duration": duration.total_seconds()})

    assert detect_interval_s(plan, configured_s=10.0) == pytest.approx(expected_s)
