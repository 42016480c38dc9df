"""Agent settings: environment variables prefixed SOAK_AGENT_ (the token also from SOAK_API_TOKEN)."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    """Everything a node agent needs to know."""

    # populate_by_name: without it AgentSettings(api_token=...) is silently ignored (the field has aliases).
    model_config = SettingsConfigDict(env_prefix="SOAK_AGENT_", extra="ignore", populate_by_name=True)

    controller_url: str = "http://127.0.0.1:8000"
    api_token: str | None = Field(default=None, validation_alias=AliasChoices("SOAK_AGENT_API_TOKEN", "SOAK_API_TOKEN"))
    node_name: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    data_dir: Path | None = Field(default=None, description="inbox, spool and simulated-device state; .soak/nodes/NAME")
    interval_s: float = Field(default=1.0, gt=0, le=3600)
    simulated: int = Field(default=0, ge=0, le=1024, description="simulated accelerators this node offers")
    sim_first_index: int = Field(default=0, ge=0, description="number of the first simulated device (sim0, sim1…)")
    cpu_device: bool = Field(default=True, description="offer the host CPU as a real device")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9108, ge=0, le=65535, description="0 picks a free port")
    spool_max_batches: int = Field(
        default=200_000, ge=1, description="batches kept for the controller; past this the oldest are dropped"
    )
    spool_max_bytes: int = Field(
        default=1 << 30,
        ge=1,
        description="disk the spool may use (batches and the report files they carry); past this the oldest go",
    )

    push_interval_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="how often the spool's batches are sent; 0: every interval (collection stays every interval_s)",
    )
    push_max_batches: int = Field(default=100, ge=1, le=1000, description="spooled batches one request carries")
    push_max_bytes: int = Field(
        default=4 << 20, ge=1024, description="JSON one request carries (a larger single batch still goes alone)"
    )

    @property
    def node_dir(self) -> Path:
        """Where this node keeps its inbox, spool and simulated-device state."""
        return self.data_dir or Path(".soak") / "nodes" / self.node_name

    @property
    def inbox_dir(self) -> Path:
        """Where workers drop their reports."""
        return self.node_dir / "inbox"

    @property
    def spool_path(self) -> Path:
        """The SQLite file holding batches not yet acknowledged by the controller."""
        return self.node_dir / "spool.db"

    @property
    def spooled_dir(self) -> Path:
        """Where worker reports wait, once spooled, until the controller acknowledged them."""
        return self.node_dir / "spooled"

    @property
    def sim_state_dir(self) -> Path:
        """Where simulated devices publish their state."""
        return self.node_dir / "sim"
