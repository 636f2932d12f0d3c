"""Headless Chromium for tests: screenshot a local HTML file and dump its rendered DOM, or keep a live
page open (``LivePage``) to watch it change.

Installing Chromium is the test setup's job (Debian: ``apt-get install -y chromium``); tests call
``require_chromium()`` and skip with that instruction when it is missing. Chromium runs with no
sandbox (tests run as root), no GPU, no network services and a throwaway profile. A live page is driven
over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ended by NUL on file
descriptors 3 and 4), so no client library is needed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
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


class LivePage:
    """One page kept open in headless Chromium: read its DOM, wait for it to change, screenshot it.

    ``with LivePage(url) as page: page.wait_for("js expression"); page.screenshot(png)``
    """

    def __init__(self, url: str, *, width: int = 1280, height: int = 2000, timeout: float = 60):
        self.url, self.size, self.timeout = url, (width, height), timeout

    def __enter__(self) -> LivePage:
        binary = require_chromium()
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        to_chromium, self._out = os.pipe()
        self._in, from_chromium = os.pipe()

        def descriptors() -> None:  # in the child: the pipe ends on 3 and 4, where Chromium expects them
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chromium, from_chromium)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        width, height = self.size
        self._proc = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4),  # kept open in the child after descriptors()
            preexec_fn=descriptors,
            env=os.environ | {"HOME": self._profile.name},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chromium)
        os.close(from_chromium)
        self._buffer, self._id = b"", 0
        target = self._call("Target.createTarget", url=self.url)["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self._call(  # the viewport itself, not the window around it
            "Emulation.setDeviceMetricsOverride",
            self._session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call("Browser.close")
        except (OSError, RuntimeError):
            pass
        finally:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            os.close(self._out)
            os.close(self._in)
            self._profile.cleanup()

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:  # skip the events Chromium sends until the answer to this call
            while b"\0" not in self._buffer:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not answer {method} in {self.timeout} s")
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited while answering {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self._call("Runtime.evaluate", self._session, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def wait_for(self, expression: str, timeout: float = 30) -> None:
        """Poll until ``expression`` is truthy in the page (an error counts as false: the page may still be
        loading); fail with the page's text if it never is."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(
            f"(() => {{ try {{ return Boolean({expression}); }} catch {{ return false; }} }})()"
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"never true: {expression}\n{self.evaluate('document.body?.innerText')}")
            time.sleep(0.2)

    def screenshot(self, png: Path) -> Path:
        """The viewport as ``png``."""
        png = Path(png)
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(
            base64.b64decode(self._call("Page.captureScreenshot", self._session, format="png")["data"])
        )
        return png
