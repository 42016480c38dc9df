"""A simulated campaign in a migrated SQLite store, shared by the report tests (generating it takes seconds)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from soak.analysis.sim.spec import FleetSpec
from soak.analysis.sim.store import store_fleet
from soak.campaigns.models import Campaign
from soak.db import make_engine, session_factory
from soak.report.builder import build_report
from soak.report.model import Report

# Small enough to build in seconds, long enough (six hours, five devices) for leaks, drifts and peers to show.
SPEC = FleetSpec(seed=1, devices=5, devices_per_node=4, days=0.25, sample_interval_s=60.0, warmup_s=1800.0)


@dataclass(frozen=True)
class StoredCampaign:
    """The store's URL and the simulated campaign's id."""

    url: str
    campaign_id: int


@pytest.fixture(scope="session")
def stored_campaign(migrated_sqlite: Path, tmp_path_factory: pytest.TempPathFactory) -> StoredCampaign:
    """A finished simulated campaign with its findings, in a SQLite file of its own."""
    path = tmp_path_factory.mktemp("report") / "soak.db"
    shutil.copyfile(migrated_sqlite, path)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    with session_factory(engine)() as session:
        campaign = store_fleet(session=session, spec=SPEC, name="poc-a", resolution="raw")
        campaign_id = campaign.id
    engine.dispose()
    return StoredCampaign(url=url, campaign_id=campaign_id)


@pytest.fixture(scope="session")
def report(stored_campaign: StoredCampaign) -> Report:
    """The simulated campaign's report, built once (plots take seconds)."""
    engine = make_engine(stored_campaign.url)
    with session_factory(engine)() as session:
        campaign = session.get(Campaign, stored_campaign.campaign_id)
        assert campaign is not None
        built = build_report(session=session, campaign=campaign)
    engine.dispose()
    return built


@pytest.fixture
def report_session(stored_campaign: StoredCampaign) -> Iterator[Session]:
    """A session on the shared store."""
    engine = make_engine(stored_campaign.url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()
