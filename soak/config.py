"""Controller settings: environment variables prefixed SOAK_, validated at start."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(".soak")
_PLACEHOLDERS = ("changeme", "change-me", "change_me", "example", "default", "placeholder", "password", "demo")


class Settings(BaseSettings):
    """Everything the controller process needs to know."""

    model_config = SettingsConfigDict(env_prefix="SOAK_", extra="ignore")

    environment: Literal["development", "demo", "production"] = "development"
    database_url: str = f"sqlite:///{DATA_DIR / 'soak.db'}"
    api_token: str | None = Field(
        default=None,
        description="bootstrap operator token (every right); tokens from `soak token create` are the ones to hand out",
    )
    host: str = Field(default="127.0.0.1", description="listen address; loopback unless told otherwise")
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API; none (CORS closed) by default"
    )
    max_body_bytes: int = Field(default=32 << 20, ge=1024, description="larger request bodies are answered 413")
    max_concurrent_requests: int = Field(
        default=24,
        ge=1,
        le=30,
        description="requests worked on at once (the rest wait their turn); under the database pool's 30 connections",
    )
    max_batch_samples: int = Field(
        default=200_000, ge=1, description="samples one telemetry batch (or request) may carry"
    )
    max_batch_events: int = Field(default=20_000, ge=1, description="events one telemetry batch (or request) may carry")
    max_request_batches: int = Field(
        default=1000,
        ge=1,
        description="telemetry batches one request may carry; their items together count against the batch limits",
    )
    max_metrics_per_node: int = Field(
        default=2000, ge=1, description="distinct metric names a node may send; samples of further names are refused"
    )
    max_sample_age_s: float = Field(
        default=3652 * 86400.0,
        gt=0,
        description="samples and events older than this are refused: ten years by default, which catches a clock "
        "at 1970 or uptime sent as epoch seconds; tighten it to what a node's spool can hold back",
    )
    max_clock_ahead_s: float = Field(
        default=3600.0, gt=0, description="samples and events further in the future are refused (a wrong clock)"
    )
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

    agents_as_ray_actors: bool = Field(
        default=False,
        description="start a node agent as a Ray actor on each Ray node that carries soak_node_<name> and that no "
        "agent has registered (off: agents run as daemons, `soak agent`; see docs/deploy.md)",
    )
    agent_actor_controller_url: str | None = Field(
        default=None,
        description="where agents started as Ray actors reach this controller; http://SOAK_HOST:SOAK_PORT when unset",
    )
    agent_actor_data_dir: Path = Field(
        default=Path("/var/lib/soak/nodes"),
        description="on each node, agents started as Ray actors keep their inbox, spool and simulated-device state "
        "in <this>/<node name>; it must be writable by Ray's processes there",
    )
    agent_actor_metrics_port: int = Field(
        default=9108, ge=0, le=65535, description="/metrics port of agents started as Ray actors; 0 picks a free one"
    )
    agent_actor_cpu_device: bool = Field(
        default=True, description="whether agents started as Ray actors offer their host's CPU as a device"
    )

    @model_validator(mode="after")
    def _production_refuses_a_weak_token(self) -> Settings:
        if self.environment == "production" and self.api_token is not None and weak_token(self.api_token):
            raise ValueError(
                "SOAK_API_TOKEN is too weak for production: use at least 32 random characters (`soak token "
                "create` issues stored tokens), or unset it once an operator token exists"
            )
        return self

    @property
    def reads_open(self) -> bool:
        """Whether reads skip the token (demo and development only)."""
        return self.environment != "production"


def weak_token(token: str) -> bool:
    """Short, repetitive, or a placeholder left from an example (`changeme`, `demo`, ...)."""
    lowered = token.lower()
    return len(token) < 32 or len(set(token)) < 10 or any(word in lowered for word in _PLACEHOLDERS)


def new_token() -> str:
    """A fresh random bearer token."""
    return secrets.token_urlsafe(32)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
