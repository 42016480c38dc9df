"""Controller settings: environment variables prefixed SOAK_, validated at start."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(".soak")


class Settings(BaseSettings):
    """Everything the controller process needs to know."""

    model_config = SettingsConfigDict(env_prefix="SOAK_", extra="ignore")

    environment: Literal["development", "demo", "production"] = "development"
    database_url: str = f"sqlite:///{DATA_DIR / 'soak.db'}"
    api_token: str | None = Field(default=None, description="bearer token required for writes")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    executor: Literal["ray", "local"] = "ray"
    ray_address: str | None = Field(default=None, description="existing cluster; a local one starts when unset")
    local_sim_slots: int = Field(default=64, ge=1, description="SOAK_SIM resources of a local Ray cluster")
    detect_interval_s: float = Field(default=10.0, gt=0)
    placement_wait_s: float = Field(default=30.0, ge=0, description="how long to wait for agents to register")
    hang_timeout_s: float = Field(default=30.0, gt=0)
    supervisor_tick_s: float = Field(default=0.5, gt=0)
    rollup_interval_s: float = Field(
        default=10.0, gt=0, description="how often new samples are merged into the minute and hour rollups"
    )
    raw_retention_days: float = Field(
        default=14.0,
        gt=0,
        description="days raw samples are kept once rolled up; the minute and hour rollups are kept for good",
    )
    prometheus_targets_file: Path | None = Field(
        default=None,
        description="file_sd JSON the controller rewrites with itself and every agent that registers; point "
        "Prometheus' file_sd_configs at it (deploy/prometheus/prometheus.yml)",
    )
    report_signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) that signs report manifests; `soak report keygen` makes one",
    )
    rendezvous_host: str = Field(
        default="127.0.0.1",
        description="address of this host that workers reach for collective workloads' rendezvous (multi-node: "
        "the controller's cluster address)",
    )
    gloo_interface: str | None = Field(
        default=None, description="network interface of CPU collectives; 'lo' when the rendezvous host is loopback"
    )

    @model_validator(mode="after")
    def _production_needs_a_real_token(self) -> Settings:
        if self.environment == "production" and (self.api_token is None or len(self.api_token) < 32):
            raise ValueError("SOAK_API_TOKEN must be set to at least 32 random characters in production")
        return self

    @property
    def reads_open(self) -> bool:
        """Whether reads skip the token (demo and development only)."""
        return self.environment != "production"


def new_token() -> str:
    """A fresh random bearer token."""
    return secrets.token_urlsafe(32)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
