"""End to end in a real browser: Debian's headless Chromium renders a capacity report.

The screenshot must exist, must not be blank, and must show the embedded plots: matplotlib's
default blue (#1f77b4, the measured-capacity line and points) appears nowhere in the page's own
CSS, so finding it in the screenshot means the data-URI images were decoded and painted (a wrong
Content-Security-Policy or a broken data URI leaves only text and table borders). Skipped when
Chromium is not installed (``.ci/run`` installs it with apt).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def screenshot(html: Path, png: Path, tmp_path: Path, size: str = "1200,1400") -> np.ndarray:
    from PIL import Image

    profile = tmp_path / f"profile-{png.stem}"
    r = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
         f"--screenshot={png}", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert png.exists() and png.stat().st_size > 0
    return np.asarray(Image.open(png).convert("RGB")).astype(np.int16)


def tab_blue_pixels(img: np.ndarray) -> int:
    return int((np.abs(img - np.array([31, 119, 180])).max(axis=-1) <= 12).sum())


def colored_pixels(img: np.ndarray) -> int:
    return int(((img.max(axis=-1) - img.min(axis=-1)) > 60).sum())


@pytest.fixture(scope="module")
def capacity_run(tmp_path_factory) -> Path:
    from memlens import capacity as cap

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("cap") / "smoke"
        cap.run(cap.load_config("smoke", max_steps=40), out, workers=1)
    finally:
        torch.set_num_threads(threads)
    return out


def test_report_renders_in_headless_chromium(capacity_run, tmp_path):
    from memlens.report import write_report

    info = write_report([capacity_run], tmp_path / "report.html")
    img = screenshot(info.path, tmp_path / "report.png", tmp_path)
    assert img.shape[:2] == (1400, 1200)
    # not blank: real variation in the pixels, and a fair share of non-white ones
    assert img.std() > 10
    assert (img.min(axis=-1) < 200).mean() > 0.01
    # the plots were painted
    assert tab_blue_pixels(img) > 100

    # control: the same page with the image data removed renders without that blue
    page = info.path.read_text(encoding="utf-8")
    stripped = tmp_path / "no-images.html"
    stripped.write_text(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:,", page))
    control = screenshot(stripped, tmp_path / "control.png", tmp_path)
    assert tab_blue_pixels(control) < 10
    assert colored_pixels(img) > 5 * max(colored_pixels(control), 100)
