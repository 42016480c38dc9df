"""A plan the fleet cannot satisfy fails at once with a reason naming the selector, and holds no device."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from soak.api import create_app
from soak.config import Settings
from soak.migrations import upgrade

TOKEN = "placement-token-0123456789abcdef0123456789ab"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_too_many_devices_requested_fails_the_campaign_naming_the_selector(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'soak.db'}"
    upgrade(database_url)
    settings = Settings(database_url=database_url, api_token=TOKEN, executor="local", placement_wait_s=0)
    with TestClient(create_app(settings)) as client:
        devices = [
            {
                "name": f"sim{i}",
                "backend": "sim",
                "index": i,
                "vendor": "simulated",
                "model": "Simulated H200",
                "simulated": True,
            }
            for i in range(2)
        ]
        node = {"hostname": "n", "inbox_dir": str(tmp_path), "sim_state_dir": str(tmp_path), "devices": devices}
        assert client.put("/api/v1/nodes/n", json=node, headers=AUTH).status_code == 200
        plan = {"name": "too-big", "duration": "10m", "devices": {"simulated": 4}, "workloads": [{"name": "gemm"}]}
        campaign_id = client.post("/api/v1/campaigns", json=plan, headers=AUTH).json()["id"]

        give_up_s = time.time() + 30
        while (campaign := client.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"])["state"] == "pending":
            assert time.time() < give_up_s, "placement must fail, not hang"
            time.sleep(0.2)

        assert campaign["state"] == "failed"
        assert campaign["reason"].startswith("devices[0]: the plan asks for 4 simulated devices, the fleet has 2 free")
        assert all(device["campaign_id"] is None for device in client.get("/api/v1/devices").json())
