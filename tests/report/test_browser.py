"""The HTML report in a real headless Chromium: every plot loads, the verdict shows, nothing logs an error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from soak.report.html import render_html
from soak.report.model import Report

CHROMIUM = "/usr/bin/chromium"
# What the project runs Chromium with everywhere: no sandbox (containers), no GPU, no traffic of its own.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def chromium() -> str:
    """Debian's chromium (installed by .ci/run): skipped without it, failed under CI."""
    if shutil.which("chromium") is None or not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must provide it", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


def test_the_html_report_renders_in_a_browser(chromium: str, report: Report, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    html = tmp_path / "report.html"
    html.write_text(render_html(report))
    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 768},
        )
        try:
            page = context.new_page()
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(html.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            verdict_visible = page.is_visible("#verdict")
            verdict_text = page.inner_text("#verdict")
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            context.close()
    assert problems == []
    # Self-contained: the page asks for nothing but itself (plots are data: URLs, which are not requests).
    assert [url for url in requests if not url.startswith(("file://", "data:"))] == []
    assert len(images) == len(report.plots) >= 4
    assert all(complete and width > 0 for _, complete, width in images), images
    assert verdict_visible and report.verdict.value in verdict_text
