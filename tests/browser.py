"""Headless Chromium for tests: screenshot a local HTML file and dump its rendered DOM.

Installing Chromium is the test setup's job (Debian: ``apt-get install -y chromium``); tests call
``require_chromium()`` and skip with that instruction when it is missing. Chromium runs with no
sandbox (tests run as root), no GPU, no network services and a throwaway profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

INSTALL_HINT = "Chromium is not installed (Debian: apt-get install -y chromium); skipping the browser test"

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary: $CHROMIUM, /usr/bin/chromium, or chromium on PATH."""
    candidates = [os.environ.get("CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def require_chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(INSTALL_HINT)
    return path


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        env = os.environ | {"HOME": profile}
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 2000, timeout: float = 90) -> Path:
    """Render ``html`` at width x height and save the viewport as ``png``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    proc = _run(
        [f"--screenshot={png}", f"--window-size={width},{height}", Path(html).resolve().as_uri()], timeout
    )
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def dump_dom(html: Path, *, timeout: float = 90) -> str:
    """The DOM after the page has loaded, serialised as HTML."""
    proc = _run(["--dump-dom", Path(html).resolve().as_uri()], timeout)
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise RuntimeError(f"chromium --dump-dom failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout
