"""A real Prometheus on loopback for tests: started with a given config in a temporary directory, then stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from soak.embedded import free_port


def prometheus_binary() -> str:
    """The prometheus executable; a test without it fails in CI (which installs it) and is skipped elsewhere."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed; CI installs Debian's prometheus package")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return binary


def instant(url: str, query: str) -> httpx.Response:
    """Evaluate a PromQL expression now."""
    return httpx.post(f"{url}/api/v1/query", data={"query": query}, timeout=10)


@contextmanager
def running_prometheus(config: str, workdir: Path) -> Iterator[str]:
    """Start Prometheus with this configuration (YAML text), wait until it is ready, yield its URL."""
    config_path = workdir / "prometheus.yml"
    config_path.write_text(config)
    address = f"127.0.0.1:{free_port()}"
    log_path = workdir / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{address}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
