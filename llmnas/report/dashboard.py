"""`llmnas dashboard [RESULTS]`: a live page on 127.0.0.1 listing the runs and showing one run's progress,
Pareto front and leaderboard, refreshed as its events arrive.

The standard library's HTTP server, bound to 127.0.0.1 only, answering only requests addressed to it by
that name or ``localhost`` (a page elsewhere cannot rebind its own name to it and read the runs). The page
is rendered by report/html.py from results/read.py, the same reading and escaping as the report; its one
script, served from here, polls ``/state`` every second and swaps in new fragments when a version (the
sizes and times of the runs' files) has changed. The Content-Security-Policy allows that script and
nothing inline: text from candidates is escaped, and would not run if it were not.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from llmnas.errors import UserError
from llmnas.metrics import quality
from llmnas.report.html import CSS, esc, fmt, live_sections
from llmnas.report.plots import pareto_png, progress_png
from llmnas.results.read import load_run, run_row, runs
from llmnas.runs.layout import RunLayout

log = logging.getLogger("llmnas")

HOST = "127.0.0.1"
POLL_MS = 1000
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
EXTRA_CSS = """
#live { font-size:12px; } tr.current td { background:#eef3fd; }
.bar { margin:10px 0 0; }
"""
SCRIPT = f""""use strict";
const body = document.body, pinned = body.dataset.run, live = document.getElementById("live");
let version = body.dataset.version;
async function poll() {{
  try {{
    const reply = await fetch("/state?" + new URLSearchParams({{run: pinned, v: version}}), {{cache: "no-store"}});
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    const state = await reply.json();
    if (state.version !== version) {{
      document.getElementById("runs").innerHTML = state.runs;
      document.getElementById("run").innerHTML = state.view;
      version = state.version;
    }}
    live.textContent = "live: checked " + new Date().toLocaleTimeString();
    live.className = "ok";
  }} catch (error) {{
    live.textContent = "the dashboard is not answering (" + error.message + "); retrying";
    live.className = "bad";
  }}
  setTimeout(poll, {POLL_MS});
}}
setTimeout(poll, {POLL_MS});
"""
READ_ERRORS = (OSError, ValueError, TypeError, KeyError, UserError)


def _token(folder: Path) -> tuple:
    """What changes when a run does: the size and time of each file the reader reads."""
    paths = RunLayout(folder)
    out = []
    for path in (paths.run_info, paths.requirements, paths.events):
        try:
            st = path.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


@dataclass
class State:
    version: str
    current: str  # the run shown ("" when there is none)
    runs: str  # HTML fragments
    view: str


@dataclass
class _View:
    token: tuple  # of the files the view was read from
    drawn: tuple | None  # of the files its plots were drawn from
    at: float  # when they were drawn (time.monotonic)
    plots: tuple[bytes, bytes]  # Pareto, progress
    html: str


class Dashboard:
    """The runs under ``results`` as HTML fragments, each read again only when its files change. Plots
    take most of the time (about a second for 500 candidates), so a run's are drawn again at most every
    ``redraw_s`` seconds; its numbers and leaderboard follow every event."""

    def __init__(self, results: Path, redraw_s: float = 5.0):
        self.results = Path(results)
        self.redraw_s = redraw_s
        self._rows: dict[str, tuple[tuple, dict]] = {}
        self._views: dict[str, _View] = {}
        self._lock = threading.Lock()  # one reader at a time: matplotlib and the caches

    def state(self, pinned: str = "") -> State:
        """The listing and the view of ``pinned``, or of the newest run when none is pinned."""
        with self._lock:
            tokens: dict[str, tuple] = {}

            def row(folder: Path) -> dict:
                tokens[folder.name] = _token(folder)
                return self._row(folder, tokens[folder.name])

            rows = runs(self.results, row=row)
            for cache in (self._rows, self._views):  # forget runs that were removed
                for gone in cache.keys() - tokens.keys():
                    del cache[gone]
            current = pinned or (rows[-1]["run"] if rows else "")
            view = self._view(current, tokens)
            version = hashlib.blake2b(
                repr((sorted(tokens.items()), current, view.drawn)).encode(), digest_size=12
            ).hexdigest()
            return State(version, current, _runs_table(rows, current, self.results), view.html)

    def _row(self, folder: Path, token: tuple) -> dict:
        cached = self._rows.get(folder.name)
        if cached is None or cached[0] != token:
            cached = self._rows[folder.name] = (token, run_row(folder))
        return cached[1]

    def _view(self, name: str, tokens: dict[str, tuple]) -> _View:
        if name not in tokens:  # only names listed here ever become paths
            if not tokens:
                return _message(f"No run in {esc(self.results)} yet: this page shows one when it starts.")
            return _message(f"No run named {esc(name)} in {esc(self.results)}.")
        token, old = tokens[name], self._views.get(name)
        redraw = old is None or (old.drawn != token and time.monotonic() - old.at >= self.redraw_s)
        if old is not None and old.token == token and not redraw:
            return old
        try:
            run = load_run(self.results / name)
        except READ_ERRORS as exc:
            return _message(f"Cannot read {esc(name)}: {esc(exc)}")
        if redraw:
            view = _View(token, token, time.monotonic(), (pareto_png(run), progress_png(run)), "")
        else:
            view = _View(token, old.drawn, old.at, old.plots, "")
        view.html = live_sections(run, *view.plots)
        self._views[name] = view
        return view


def _message(html: str) -> _View:
    return _View((), None, 0.0, (b"", b""), f"<section><p class='muted'>{html}</p></section>")


def _runs_table(rows: list[dict], current: str, results: Path) -> str:
    if not rows:
        return f"<h2>Runs in {esc(results)}</h2><p class='muted'>None yet.</p>"
    body = []
    for r in reversed(rows):  # newest first
        best = quality(r.get("best") or {})  # accuracy, or R² for a regression
        budget = f" / {r['budget']}" if r.get("budget") else ""
        status = esc(r["status"]) + (
            f" <span class='muted'>{esc(r['error'])}</span>" if r.get("error") else ""
        )
        body.append(
            f"<tr class='{'current' if r['run'] == current else ''}'>"
            f"<td><a class='mono' href='/?run={esc(quote(r['run'], safe=''))}'>{esc(r['run'])}</a></td>"
            f"<td>{status}</td><td class='n'>{esc(r.get('proposed', '–'))}{esc(budget)}</td>"
            f"<td class='n'>{esc(r.get('passed', '–'))}</td><td class='n'>{fmt(best, '.4f')}</td>"
            f"<td>{esc((r.get('created') or '').split('.')[0])}</td></tr>"
        )
    return (
        f"<h2>Runs in {esc(results)}</h2><table id='runs-table'><thead><tr><th>run</th><th>status</th>"
        "<th class='n'>proposed</th><th class='n'>passed</th><th class='n'>best val</th><th>created</th>"
        f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
        "<p class='caption'>Choose a run to stay on it; <a href='/'>follow the newest</a>.</p>"
    )


def page(state: State, pinned: str, results: Path) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>llmnas dashboard: {esc(state.current or results)}</title><style>{CSS}{EXTRA_CSS}</style>"
        "<script src='/dashboard.js' defer></script></head>"
        f"<body data-run='{esc(pinned)}' data-version='{esc(state.version)}'><main>"
        f"<p class='sub'><b>llmnas dashboard</b> · {esc(results)} · <span id='live'>live</span></p>"
        f"<section id='runs'>{state.runs}</section><div id='run'>{state.view}</div></main></body></html>\n"
    )


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    timeout = 5.0  # seconds a client may stay silent: closing the server waits for its requests

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        if self.headers.get("Host") not in self.server.hosts:
            return self._send(
                HTTPStatus.FORBIDDEN, "text/plain", "this dashboard answers only to " + self.server.url
            )
        url = urlsplit(self.path)
        try:
            self._answer(url.path, parse_qs(url.query))
        except ConnectionError:  # the browser went away: handle_error
            raise
        except (OSError, UserError) as exc:  # the results folder went away or cannot be read
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", f"cannot read the runs: {exc}")

    def _answer(self, path: str, query: dict[str, list[str]]) -> None:
        pinned = query.get("run", [""])[0]
        dash = self.server.dashboard
        if path == "/":
            self._send(HTTPStatus.OK, "text/html", page(dash.state(pinned), pinned, dash.results))
        elif path == "/state":
            state = dash.state(pinned)
            unchanged = query.get("v", [""])[0] == state.version
            reply = {"version": state.version} if unchanged else vars(state)
            self._send(HTTPStatus.OK, "application/json", json.dumps(reply))
        elif path == "/dashboard.js":
            self._send(HTTPStatus.OK, "text/javascript", SCRIPT)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", "not found")

    def _send(self, status: HTTPStatus, kind: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the http.server signature
        log.debug("dashboard: " + format, *args)


class DashboardServer(ThreadingHTTPServer):
    """Closing it (Ctrl-C) waits for the pages being drawn: interpreter shutdown under a thread that is
    still drawing with matplotlib aborts the process."""

    daemon_threads = False

    def __init__(self, dashboard: Dashboard, port: int):
        super().__init__((HOST, port), _Handler)
        self.dashboard = dashboard
        self.port = self.server_address[1]
        self.url = f"http://{HOST}:{self.port}/"
        self.hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}

    def handle_error(self, request, client_address) -> None:
        """A browser that closed its connection (a reload, a closed tab) is no error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("dashboard: %s closed the connection", client_address)
        else:
            super().handle_error(request, client_address)


def open_dashboard(path: Path, port: int) -> tuple[DashboardServer, str]:
    """A server for the runs under ``path`` (or for the run folder ``path`` and its siblings) and the
    URL to open; ``port`` 0 picks a free one. Call ``serve_forever()`` on it."""
    path = Path(path)
    pinned = ""
    if RunLayout(path).is_run():
        path, pinned = path.resolve().parent, path.resolve().name
    elif not path.is_dir():
        raise UserError(f"{path} is not a folder: pass the folder of runs (default: results)")
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {port}")
    try:
        server = DashboardServer(Dashboard(path), port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {HOST} is in use: pass another --port, or --port 0 for a free one"
            ) from None
        raise
    return server, server.url + (f"?run={quote(pinned, safe='')}" if pinned else "")
