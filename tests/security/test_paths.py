"""Downloads cannot leave their directory, and campaign names cannot steer file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.paths import PathEscape, contained, file_stem


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("nightly smoke", "nightly-smoke"),
        ("../../etc/passwd", "etc-passwd"),
        ("..", "unnamed"),
        (".hidden", "hidden"),
        ("a/b\\c:d", "a-b-c-d"),
        ("<script>alert(1)</script>", "script-alert-1-script"),
        ("x" * 200, "x" * 80),
    ],
)
def test_a_campaign_name_becomes_a_harmless_file_stem(name: str, stem: str) -> None:
    assert file_stem(name) == stem


def test_a_download_stays_in_its_directory(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "campaign-1.html").write_text("report")
    (reports / "escape").symlink_to(tmp_path)

    assert contained(reports, "campaign-1.html") == (reports / "campaign-1.html").resolve()
    for name in ["../secret", "/etc/passwd", "escape/secret", "", ".", "a\0b"]:
        with pytest.raises(PathEscape):
            contained(reports, name)
