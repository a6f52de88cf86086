"""Headless Chromium for the render tests: a screenshot, or the DOM after scripts ran, and
pixel counts of a colour in a screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: `apt-get install chromium` (scripts/setup/apt.sh)"
    return found


def _run(args: list[str], page: Path) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="mlcd-chromium-") as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
            capture_output=True,
            timeout=120,
            check=False,
        )


def screenshot(page: Path, png: Path, *, width: int = 1200, height: int = 1800) -> Path:
    done = _run([f"--screenshot={png}", f"--window-size={width},{height}"], page)
    assert png.is_file(), done.stderr.decode(errors="replace")[-2000:]
    return png


def dump_dom(page: Path, *, budget_ms: int = 10000) -> str:
    done = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom"], page)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode()


def colour_pixels(png: Path, rgb: tuple[int, int, int], tolerance: int = 30) -> int:
    """How many pixels of the screenshot are within `tolerance` of `rgb` on every channel."""
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    near = np.abs(pixels - np.array(rgb, dtype=np.int16)) <= tolerance
    return int(near.all(axis=2).sum())
