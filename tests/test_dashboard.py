"""`llmnas dashboard`: the live page of the runs, from run folders written by the real RunStore, read over
HTTP and watched in headless Chromium while events are appended."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import LivePage, require_chromium
from conftest import wait_until
from PIL import Image

from llmnas.cli import EXIT_USAGE, main
from llmnas.report.dashboard import Dashboard, _Handler, open_dashboard
from llmnas.runs.events import EvaluationEvent, Metrics, ProposalEvent, StoppedEvent
from llmnas.runs.store import RunStore

HOSTILE = '<img src=x onerror="window.pwned=1">'
REQUIREMENTS = f"classify digits; under 20k parameters {HOSTILE}"
RUN_A, RUN_B = "2026-01-01-digits-s0", "2026-01-02-digits-s1"


def new_run(results: Path, name: str, created: str, budget: int = 6) -> RunStore:
    info = {
        "config": {"requirements": REQUIREMENTS, "data": "digits", "budget": budget, "llm": "offline", "seed": 0},
        "spec": {"text": REQUIREMENTS, "max_params": 20000},
        "seed": 0,
        "created": created,
    }  # fmt: skip
    return RunStore.create(results / name, info, REQUIREMENTS)


def propose(
    store: RunStore, rnd: int, slot: int, cid: str, val: float | None, params: int = 5000, **kw
) -> None:
    """A proposal and its evaluation: passed with ``val`` accuracy, or failed in training when None."""
    store.append(ProposalEvent(round=rnd, slot=slot, candidate_id=cid, operator="mutate", **kw))
    if val is None:
        store.append(
            EvaluationEvent(
                round=rnd, candidate_id=cid, ok=False, stage="train", message=HOSTILE, reward=-0.3
            )
        )
        return
    m = Metrics(val_acc=val, test_acc=val - 0.01, params=params, flops=params * 8, latency_ms=params / 1e5)
    store.append(EvaluationEvent(round=rnd, candidate_id=cid, ok=True, metrics=m, reward=val))  # fmt: skip


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """One run in progress: two candidates passed, one failed; a hostile variant and requirements."""
    store = new_run(tmp_path / "results", RUN_A, "2026-01-01 00:00:00")
    propose(store, 0, 0, "aaaaaaaaaaaa", 0.81, 3000, variant=HOSTILE)
    propose(store, 0, 1, "bbbbbbbbbbbb", 0.86, 9000)
    propose(store, 0, 2, "cccccccccccc", None)
    store.close()
    return tmp_path / "results"


@pytest.fixture
def serve():
    """Start a dashboard on a free port in a thread: ``server, url = serve(path)``."""
    servers = []

    def start(path: Path):
        server, url = open_dashboard(path, 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(url: str, host: str | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_serves_the_runs_escaped_on_localhost_only(results: Path, serve):
    server, url = serve(results)
    assert server.server_address[0] == "127.0.0.1" and url == f"http://127.0.0.1:{server.port}/"
    status, headers, page = get(url)
    assert status == 200 and "script-src 'self';" in headers["Content-Security-Policy"]
    assert RUN_A in page and "bbbbbbbbbbbb" in page and 'id="leaderboard-table"' in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in page
    assert len(re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,', page)) == 2

    version = json.loads(get(url + "state")[2])["version"]
    assert json.loads(get(f"{url}state?v={version}")[2]) == {"version": version}  # nothing new
    store = RunStore.open(results / RUN_A)
    propose(store, 1, 0, "dddddddddddd", 0.93, 4000)
    state = json.loads(get(f"{url}state?v={version}")[2])
    assert state["version"] != version and state["current"] == RUN_A
    assert "dddddddddddd" in state["view"] and RUN_A in state["runs"]
    store.append(StoppedEvent(reason="LLM token budget spent"))
    assert "LLM token budget spent" in json.loads(get(f"{url}state?v={state['version']}")[2])["view"]

    assert get(url, host=f"attacker.example:{server.port}")[0] == 403  # a rebound name is refused
    status, _, text = get(url + "state?run=" + urllib.request.quote("../../etc"))
    assert status == 200 and "No run named ../../etc" in json.loads(text)["view"]
    assert get(url + "dashboard.js")[1]["Content-Type"].startswith("text/javascript")
    assert get(url + "results/" + RUN_A + "/run.json")[0] == 404  # no file is served by path
    shutil.rmtree(results)
    status, _, text = get(url + "state")
    assert status == 503 and "is not a folder" in text


def test_numbers_follow_every_event_and_plots_are_redrawn_at_most_every_redraw_s(results: Path):
    dash = Dashboard(results, redraw_s=3600)
    first = dash.state()
    store = RunStore.open(results / RUN_A)
    propose(store, 1, 0, "dddddddddddd", 0.93, 4000)
    second = dash.state()
    assert second.version != first.version and "dddddddddddd" in second.view  # the leaderboard at once
    assert _plots(second.view) == _plots(first.view)  # the plots not yet
    assert dash.state() == second  # nothing new: the same state, nothing drawn
    dash.redraw_s = 0
    third = dash.state()
    assert third.version != second.version and _plots(third.view) != _plots(first.view)
    assert dash.state() == third


def _plots(html: str) -> list[str]:
    return re.findall(r'src="data:image/png;base64,([^"]+)"', html)


def test_a_run_folder_is_shown_with_its_siblings_and_unreadable_runs_say_why(results: Path, serve):
    new_run(results, RUN_B, "2026-01-02 00:00:00").close()
    (results / "broken").mkdir()
    (results / "broken" / "run.json").write_text("{not json")
    _, url = serve(results / RUN_A)
    assert url.endswith(f"/?run={RUN_A}")
    page = get(url)[2]
    assert "bbbbbbbbbbbb" in page and RUN_B in page and "unreadable" in page and "is not valid JSON" in page
    assert "<h1>llmnas run <span class='mono'>2026-01-01" in page  # pinned, though RUN_B is newer
    assert f"<h1>llmnas run <span class='mono'>{RUN_B}" in get(url.split("?")[0])[2]  # follows the newest


@pytest.mark.sandbox
def test_cli_port_zero_prints_the_url_and_ctrl_c_stops_it(results: Path):
    proc = subprocess.Popen(
        # The installed entry point, as a user starts it: it sets up Ctrl-C even when the process was
        # started with SIGINT ignored (as a shell does for background jobs: `make test &`).
        [sys.executable, "-X", "faulthandler", "-c", "from llmnas.console import main; main()"]
        + ["dashboard", str(results), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match and int(match.group(1)) > 0, line + proc.stderr.read()
        assert RUN_A in get(match.group(0))[2]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) == 130
        except subprocess.TimeoutExpired:  # hung: say where (signal masks, and every thread's stack)
            lines = Path(f"/proc/{proc.pid}/status").read_text().splitlines(keepends=True)
            status = [line for line in lines if line.startswith(("State", "Sig"))]
            proc.send_signal(signal.SIGABRT)  # faulthandler prints the stacks
            pytest.fail(f"no exit 60 s after Ctrl-C: {''.join(status)}{proc.communicate(timeout=30)[1]}")


def test_closing_waits_for_a_page_being_drawn_and_the_page_arrives_whole(results: Path, serve):
    """Ctrl-C while a page draws: closing the server waits for it (interpreter shutdown under a thread
    still drawing with matplotlib aborts the process) and the browser gets the whole page."""
    server, url = serve(results)
    drawing, release, state = threading.Event(), threading.Event(), server.dashboard.state

    def slow_state(pinned: str = ""):
        drawing.set()
        release.wait(30)
        return state(pinned)

    server.dashboard.state = slow_state
    replies = []
    client = threading.Thread(target=lambda: replies.append(get(url)))
    client.start()
    assert drawing.wait(30)
    server.shutdown()
    closing = threading.Thread(target=server.server_close)
    closing.start()
    closing.join(0.5)
    assert closing.is_alive()  # still waiting for the page in flight
    release.set()
    closing.join(30)
    client.join(30)
    assert not closing.is_alive() and replies[0][0] == 200 and RUN_A in replies[0][2]


def test_a_silent_connection_does_not_hold_the_exit(results: Path, serve, monkeypatch):
    """Browsers open connections ahead of use and send nothing on them: closing times them out (after
    the handler's timeout, shortened here from 5 s)."""
    monkeypatch.setattr(_Handler, "timeout", 0.5)
    server, _ = serve(results)
    with socket.create_connection(("127.0.0.1", server.port)):
        accepted = lambda: any("process_request" in t.name for t in threading.enumerate())  # noqa: E731
        wait_until(accepted, "the server to accept the connection", 30)
        server.shutdown()
        closing = threading.Thread(target=server.server_close)
        closing.start()
        closing.join(_Handler.timeout + 15)
        assert not closing.is_alive()


def test_cli_errors_are_one_line(results: Path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["dashboard", str(results), "--port", str(taken.getsockname()[1])]) == EXIT_USAGE
    assert "is in use: pass another --port, or --port 0" in capsys.readouterr().err
    assert main(["dashboard", str(results / "nope")]) == EXIT_USAGE
    assert "is not a folder" in capsys.readouterr().err
    assert main(["dashboard", str(results), "--port", "70000"]) == EXIT_USAGE
    assert "between 0 and 65535" in capsys.readouterr().err


def _leaderboard_ids(page: LivePage) -> list[str]:
    return page.evaluate(
        "[...document.querySelectorAll('#leaderboard-table tbody tr td:nth-child(2)')].map(td => td.textContent)"
    )


@pytest.mark.sandbox
def test_the_page_follows_new_events_in_headless_chromium(results: Path, serve, tmp_path: Path):
    require_chromium()
    server, url = serve(results)
    server.dashboard.redraw_s = 1.0
    with LivePage(url, width=1280, height=2300) as page:
        page.wait_for("document.getElementById('live').className === 'ok'")  # its script polled
        assert _leaderboard_ids(page) == ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]
        before = page.screenshot(tmp_path / "dashboard-before.png")
        plot = "document.querySelector('#pareto img').src"
        old_plot = page.evaluate(plot)

        store = RunStore.open(results / RUN_A)
        propose(store, 1, 0, "dddddddddddd", 0.95, 4000, variant=HOSTILE)
        propose(store, 1, 1, "eeeeeeeeeeee", None)
        page.wait_for("document.getElementById('leaderboard-table').textContent.includes('dddddddddddd')")
        assert _leaderboard_ids(page) == ["dddddddddddd", "bbbbbbbbbbbb", "aaaaaaaaaaaa"]
        chips = page.evaluate("document.querySelector('.chips').innerText")
        assert "5 / 6" in chips and "0.9500" in chips, chips
        page.wait_for(f"{plot} !== {json.dumps(old_plot)}")  # drawn again within redraw_s
        after = page.screenshot(tmp_path / "dashboard-after.png")
        print(f"dashboard screenshots: {before} {after}")

        new_run(results, RUN_B, "2026-01-02 00:00:00").close()  # a newer run: listed, and followed
        page.wait_for(f"document.querySelector('#run h1').textContent.includes('{RUN_B}')")
        assert page.evaluate("document.querySelectorAll('#runs-table tbody tr').length") == 2
        assert page.evaluate(
            "window.pwned === undefined && document.querySelectorAll('img[src=x]').length === 0"
        )
    for png in (before, after):
        with Image.open(png) as im:
            assert im.size == (1280, 2300)
            colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
            assert colours is not None and len(colours) > 200  # plots and text, not a blank page
    assert before.read_bytes() != after.read_bytes()
