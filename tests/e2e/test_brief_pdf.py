"""``segflow brief`` on a real run: the HTML's numbers, a one-page PDF printed by headless
Chromium, and a PNG of it (``pdftoppm``) that is not blank.

The expected size and revenue share come from the customers' stored records, not the brief's code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dashboard_stream import Run, chromium_path, keep_artifact
from png_pixels import grey_levels, ink

from engine.worker_process import settings_env

pytestmark = pytest.mark.integration


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install poppler-utils (deploy/local/setup.sh does)")
    return found


def test_brief_prints_to_a_one_page_pdf_that_is_not_blank(dashboard_run: Run, tmp_path: Path) -> None:
    chromium = chromium_path()
    lifecycle = dashboard_run.sizes()["lifecycle"]
    assert lifecycle["lapsing"], lifecycle
    out, pdf = tmp_path / "brief.html", tmp_path / "brief.pdf"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}
    env |= settings_env(dashboard_run.settings)
    command = [sys.executable, "-m", "engine", "brief", "lifecycle", "lapsing", "--out", str(out)]
    command += ["--pdf", str(pdf), "--chromium", str(chromium)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr

    text = out.read_text()
    assert f'<b id="brief-customers">{lifecycle["lapsing"]:,}</b>' in text
    share = 100 * lifecycle["lapsing"] / sum(lifecycle.values())
    assert f"{share:.1f}% of lifecycle" in text
    assert "days_since_last_activity &lt;= churned_days" in text and "churned_days = 30" in text
    assert "churn_winback_email" in text and "outcomes" in text  # the win-back is on entering lapsing

    info = subprocess.run([_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.MULTILINE), info
    prefix = tmp_path / "brief"
    subprocess.run([_tool("pdftoppm"), "-png", "-r", "50", "-singlefile", str(pdf), str(prefix)], check=True)
    png = prefix.with_suffix(".png")
    width, height, levels = grey_levels(png)
    share_inked, variance = ink(levels)
    assert width > 300 and height > 400
    assert share_inked > 0.01 and variance > 100, (share_inked, variance)
    keep_artifact(pdf)
    keep_artifact(png)
