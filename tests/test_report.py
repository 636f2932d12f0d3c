"""The run report and the leaderboard, from small synthetic run folders (no search needed), plus a
headless-Chromium check that the page renders with its plots and table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import dump_dom, require_chromium, screenshot
from PIL import Image

from llmnas.errors import UserError
from llmnas.report.html import render_report
from llmnas.results.read import leaderboard, load_run, runs
from llmnas.results.tables import format_leaderboard, format_runs

HOSTILE_CODE = "import torch.nn as nn\n# </script><script>alert(1)</script>\ndef build_model(i, n):\n    return nn.Linear(64, n)\n"
HOSTILE_MESSAGE = "<img src=x onerror=alert(2)> exploded & died"
HOSTILE_NOTE = "<b onclick=alert(3)>width</b>"
REQUIREMENTS = "classify digits; under 20k parameters; <script>alert(4)</script>"

SPEC = {
    "text": REQUIREMENTS,
    "task": "classification",
    "num_classes": 10,
    "input_shape": [1, 8, 8],
    "modality": "image",
    "max_params": 20000,
    "max_latency_ms": None,
    "max_flops": None,
    "target_params": None,
    "target_latency_ms": None,
    "hints": [],
    "notes": [],
    "reward_alpha": -0.07,
    "reward_beta": -0.07,
}
POLICY = {
    "operator": {"generate": 0.4, "mutate": 0.3, "crossover": 0.1, "simplify": 0.1, "repair": 0.1},
    "variant": {"width": 0.5, "kernel": 0.5},
    "temperature": {"0.2": 0.25, "0.5": 0.25, "0.8": 0.25, "1": 0.25},
    "selector": {"pareto": 0.7, "elite": 0.3},
}


def metrics(val: float, params: int, latency: float) -> dict:
    return {
        "params": params,
        "flops": params * 8,
        "depth": 4,
        "latency_ms": latency,
        "latency_iqr_ms": 0.01,
        "peak_mem_mb": 50.0,
        "train_seconds": 0.8,
        "train_steps": 150,
        "proxies": {"synflow": 1.5},
        "val_acc": val,
        "test_acc": val - 0.01,
    }


def proposal(rnd: int, slot: int, cid: str | None, op: str = "generate", **kw) -> dict:
    return {
        "time": f"2026-01-01T00:00:{rnd * 10 + slot:02d}+00:00",
        "type": "proposal",
        "round": rnd,
        "slot": slot,
        "candidate_id": cid,
        "operator": op,
        "variant": "width",
        "temperature": 0.5,
        "selector": "pareto",
        "parents": [],
        "stage": None,
        "message": "",
        "notes": [],
        "usage": {},
        "decisions": [],
        "repairs": 0,
    } | kw


def evaluation(
    rnd: int, cid: str, m: dict | None = None, stage: str | None = None, message: str = ""
) -> dict:
    return {
        "type": "evaluation",
        "round": rnd,
        "candidate_id": cid,
        "ok": stage is None,
        "stage": stage,
        "message": message,
        "metrics": m or {},
        "reward": (m or {}).get("val_acc", -0.3),
    }


def make_run(
    folder: Path, events: list[dict], codes: dict[str, str], *, tail: str = "", budget: int = 8
) -> Path:
    (folder / "candidates").mkdir(parents=True)
    info = {
        "config": {"requirements": REQUIREMENTS, "data": "digits", "budget": budget, "llm": "offline",
                   "strategy": "rl", "seed": 0, "workers": 2, "device": "cpu",
                   "train": {"max_steps": 150, "max_seconds": 30.0, "batch_size": 64, "lr": 0.003}},
        "spec": SPEC,
        "versions": {"llmnas": "0.1.0"},
        "seed": 0,
        "created": "2026-01-01 00:00:00",
    }  # fmt: skip
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "requirements.md").write_text(f"# Requirements\n\n{REQUIREMENTS}\n")
    lines = "".join(json.dumps(e) + "\n" for e in events)
    (folder / "events.jsonl").write_text(lines + tail)
    for cid, code in codes.items():
        (folder / "candidates" / cid).mkdir()
        (folder / "candidates" / cid / "model.py").write_text(code)
    return folder


PLAIN = "import torch.nn as nn\n\ndef build_model(i, n):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, n))\n"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Two rounds: four passing candidates, a crash with a hostile message, a static rejection,
    a duplicate, an over-limit one; the first round's proposals are logged twice (a resume)."""
    r0 = [
        proposal(0, 0, "aaaaaaaaaaaa"),
        proposal(0, 1, "bbbbbbbbbbbb", notes=[HOSTILE_NOTE]),
        proposal(0, 2, "cccccccccccc"),
        proposal(0, 3, None, stage="static", message="import of 'os' is not allowed"),
    ]
    events = [
        *r0,
        evaluation(0, "aaaaaaaaaaaa", metrics(0.90, 3000, 0.05)),
        *r0,  # the round replayed after a resume: logged again, counted once
        evaluation(0, "bbbbbbbbbbbb", metrics(0.97, 9000, 0.10)),
        evaluation(0, "cccccccccccc", stage="crash", message=HOSTILE_MESSAGE),
        {"type": "round", "round": 1, "proposed": 4, "best": "bbbbbbbbbbbb", "policy": POLICY},
        proposal(1, 0, "dddddddddddd", op="mutate", parents=["bbbbbbbbbbbb"]),
        proposal(1, 1, "eeeeeeeeeeee", op="crossover", parents=["aaaaaaaaaaaa", "bbbbbbbbbbbb"]),
        proposal(1, 2, "aaaaaaaaaaaa", op="mutate", stage="duplicate", message="same code as candidate aaaaaaaaaaaa"),
        proposal(1, 3, "ffffffffffff", op="simplify"),
        evaluation(1, "dddddddddddd", metrics(0.99, 15000, 0.20)),
        evaluation(1, "eeeeeeeeeeee", metrics(0.95, 2000, 0.02)),
        evaluation(1, "ffffffffffff", metrics(0.80, 30000, 0.3), stage="budget", message="30,000 parameters > limit 20,000"),
        {"type": "round", "round": 2, "proposed": 8, "best": "dddddddddddd", "policy": POLICY},
    ]  # fmt: skip
    codes = {
        c: PLAIN for c in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "dddddddddddd", "eeeeeeeeeeee", "ffffffffffff")
    }
    codes["cccccccccccc"] = HOSTILE_CODE
    return make_run(tmp_path / "run", events, codes)


def leaderboard_ids(page: str) -> list[str]:
    table = page.split('id="leaderboard-table"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'class="mono" href="#cand-\d+">([0-9a-f]{12})<', table)


def test_report_is_self_contained_with_plots_and_ranked_leaderboard(run_dir: Path):
    path = render_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    assert page.count('src="data:image/png;base64,') == 2
    for name in ("pareto.png", "progress.png"):
        with Image.open(run_dir / "plots" / name) as im:
            assert im.format == "PNG" and im.size[0] > 800
    # nothing loads from outside: no scripts, links, remote sources
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//)', page, re.I)
    assert "Content-Security-Policy" in page
    # ranked by validation accuracy; the over-limit, crashed and duplicate ones are not ranked
    assert leaderboard_ids(page) == ["dddddddddddd", "bbbbbbbbbbbb", "eeeeeeeeeeee", "aaaaaaaaaaaa"]
    assert "reported only" in page
    # requirements, spec, operator statistics, policy, failures, candidate code
    assert "params &lt;= 20,000" in page
    for text in ("Per operator", "Failures by stage", "Final policy probabilities", "crossover", "duplicate"):
        assert text in page
    assert page.count("<details class='cand'") == 8  # the replayed round counts once
    assert "import torch.nn as nn" in page and "30,000 parameters &gt; limit 20,000" in page


def test_hostile_text_renders_as_text(run_dir: Path):
    page = render_report(run_dir).read_text()
    assert "<script" not in page.lower()
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the candidate's code
    assert "&lt;img src=x onerror=alert(2)&gt; exploded &amp; died" in page  # its failure message
    assert "&lt;b onclick=alert(3)&gt;width&lt;/b&gt;" in page  # a proposal note
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in page  # the requirements
    assert "onerror=alert(2)>" not in page and "<b onclick" not in page


def test_hostile_ids_never_become_paths_or_markup(tmp_path: Path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "model.py").write_text("TOP SECRET")
    bad = "../../secret"
    events = [proposal(0, 0, bad), evaluation(0, bad, metrics(0.9, 100, 0.1)),
              proposal(0, 1, "<i>x</i>"), evaluation(0, "<i>x</i>", metrics(0.8, 100, 0.1))]  # fmt: skip
    run = make_run(tmp_path / "runs" / "r", events, {})
    page = render_report(run).read_text()
    assert "TOP SECRET" not in page
    assert "<i>x</i>" not in page and "secret" not in page.split("<footer>")[0]
    # Ids that are not plain names never load: the report says which log lines it skipped.
    assert [p.split(":")[0] for p in load_run(run).view.problems] == [
        f"events.jsonl line {n} skipped" for n in (1, 2, 3, 4)
    ]
    assert "Skipped log lines" in page


def test_leaderboard_and_runs_api(run_dir: Path, tmp_path: Path):
    rows = leaderboard(run_dir)
    assert [r["candidate_id"] for r in rows] == [
        "dddddddddddd",
        "bbbbbbbbbbbb",
        "eeeeeeeeeeee",
        "aaaaaaaaaaaa",
    ]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    top = rows[0]
    assert top["val_acc"] == 0.99 and top["params"] == 15000 and top["operator"] == "mutate"
    assert {r["candidate_id"] for r in rows if r["pareto"]} == {
        "dddddddddddd",
        "bbbbbbbbbbbb",
        "eeeeeeeeeeee",
    }
    json.dumps(rows)  # --json must work
    assert "dddddddddddd" in format_leaderboard(rows) and "reported only" in format_leaderboard(rows)

    (run_dir.parent / "not-a-run").mkdir()
    broken = run_dir.parent / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    listed = {r["run"]: r for r in runs(run_dir.parent)}
    assert set(listed) == {"run", "broken"}
    s = listed["run"]
    assert s["status"] == "finished" and s["proposed"] == 8 and s["passed"] == 4
    assert s["evaluated"] == 6 and s["failed"] == 4 and s["pending"] == 0
    assert s["best"]["candidate_id"] == "dddddddddddd"
    assert listed["broken"]["status"] == "unreadable" and listed["broken"]["error"]
    assert "run" in format_runs(list(listed.values()))
    json.dumps(list(listed.values()))
    with pytest.raises(UserError):
        runs(tmp_path / "missing")


def test_empty_run(tmp_path: Path):
    run = make_run(tmp_path / "empty", [], {})
    (run / "events.jsonl").unlink()
    page = render_report(run).read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert "No candidate has passed yet" in page and "status s-empty" in page
    assert leaderboard(run) == [] and (run / "plots" / "pareto.png").is_file()


def test_run_with_only_failures(tmp_path: Path):
    events = [
        proposal(0, 0, "aaaaaaaaaaaa"),
        proposal(0, 1, None, stage="extract", message="no code block in the reply"),
        evaluation(0, "aaaaaaaaaaaa", stage="build", message="TypeError: bad"),
    ]
    run = make_run(tmp_path / "fail", events, {"aaaaaaaaaaaa": PLAIN})
    page = render_report(run).read_text()
    assert "No candidate has passed yet" in page
    assert "build" in page and "extract" in page and "no code block in the reply" in page
    assert leaderboard(run) == []


def test_run_in_progress_with_a_cut_last_line(tmp_path: Path):
    events = [
        proposal(0, 0, "aaaaaaaaaaaa"),
        proposal(0, 1, "bbbbbbbbbbbb"),
        evaluation(0, "aaaaaaaaaaaa", metrics(0.9, 1000, 0.1)),
    ]
    cut = json.dumps(evaluation(0, "bbbbbbbbbbbb", metrics(0.95, 1000, 0.1)))[:57]
    run = make_run(tmp_path / "live", events, {"aaaaaaaaaaaa": PLAIN, "bbbbbbbbbbbb": PLAIN}, tail=cut)
    page = render_report(run).read_text()
    assert "status s-incomplete" in page and "awaiting evaluation" in page
    assert [r["candidate_id"] for r in leaderboard(run)] == ["aaaaaaaaaaaa"]
    data = load_run(run)
    assert [c.status for c in data.candidates] == ["ok", "pending"]
    # the run goes on: the evaluation lands and a report made now shows it
    with open(run / "events.jsonl", "a") as f:
        f.write("\n" + json.dumps(evaluation(0, "bbbbbbbbbbbb", metrics(0.95, 1000, 0.1))) + "\n")
    assert [r["candidate_id"] for r in leaderboard(run)] == ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]


def test_out_elsewhere_and_odd_metric_values(run_dir: Path, tmp_path: Path):
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps(proposal(2, 0, "999999999999")) + "\n")
        f.write('{"type": "evaluation", "round": 2, "candidate_id": "999999999999", "ok": true, "stage": null,'
                ' "message": "", "metrics": {"val_acc": NaN, "params": "many", "latency_ms": null}, "reward": NaN}\n')  # fmt: skip
    out = render_report(run_dir, tmp_path / "elsewhere" / "r.html")
    assert out.is_file() and (run_dir / "plots" / "progress.png").is_file()
    assert leaderboard_ids(out.read_text())[0] == "dddddddddddd"


def test_refinement_and_llm_usage(run_dir: Path):
    spec = SPEC | {"max_params": 10000}
    with open(run_dir / "events.jsonl", "a") as f:
        for e in (
            {"type": "llm_call", "model": "gpt-x", "ok": True, "prompt_tokens": 1200, "completion_tokens": 300,
             "cost_usd": 0.0042},
            {"type": "llm_call", "model": "gpt-x", "ok": False, "error": "rate limited"},
            {"type": "refine", "time": "2026-01-01T01:00:00+00:00", "text": "now under 10k <u>params</u>",
             "spec": spec},
            {"type": "stopped", "reason": "LLM token budget spent"},
        ):  # fmt: skip
            f.write(json.dumps(e) + "\n")
    rows = leaderboard(run_dir)
    assert [r["candidate_id"] for r in rows] == ["bbbbbbbbbbbb", "eeeeeeeeeeee", "aaaaaaaaaaaa"]
    page = render_report(run_dir).read_text()
    assert "now under 10k &lt;u&gt;params&lt;/u&gt;" in page and "params &lt;= 10,000" in page
    assert "over a refined limit" in page and "status s-stopped" in page and "LLM token budget spent" in page
    assert "Language model usage" in page and "1,200 prompt + 300 completion" in page and "$0.0042" in page
    assert leaderboard_ids(page)[0] == "bbbbbbbbbbbb"


@pytest.mark.sandbox
def test_report_renders_in_headless_chromium(run_dir: Path):
    require_chromium()
    html = render_report(run_dir)
    png = screenshot(html, run_dir / "plots" / "report-screenshot.png", width=1280, height=2000)
    print(f"report screenshot: {png}")
    with Image.open(png) as im:
        assert im.size == (1280, 2000)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200  # plots and text, not a blank page
    dom = dump_dom(html)
    imgs = re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,', dom)
    assert len(imgs) == 2
    assert 'id="leaderboard-table"' in dom and "dddddddddddd" in dom
    assert "<script" not in dom.lower()  # the hostile code stayed text in the live DOM
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in dom
