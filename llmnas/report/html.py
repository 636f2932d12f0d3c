"""`llmnas report RUN`: one self-contained report.html, plus the plots as PNG files in RUN/plots/.

The page loads nothing: plots are inline base64 PNGs, the style is inline, there is no script, and a
Content-Security-Policy forbids scripts and any fetch. Everything that comes from a candidate, a model
reply or the event log is HTML-escaped, since candidate code is written by a model and may be hostile.
Works on any run folder: empty, all failures, in progress (events still being appended), or with
a last event line cut short by a kill. The plots are drawn in plots.py.

The page is one cohesive thing, kept in one file: one function per section, all sharing the escaping
helpers and the stylesheet.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmnas.metrics import quality, scores_text
from llmnas.report.plots import carbon_png, operator_colour, pareto_png, progress_png
from llmnas.results.read import (
    Candidate,
    RunData,
    failure_stages,
    leaderboard_rows,
    llm_usage,
    load_run,
    number,
    operator_stats,
    policy_probabilities,
    ranked,
    summary,
)
from llmnas.runs.layout import CODE, REPLY, RunLayout
from llmnas.runs.store import write_atomic
from llmnas.safe_text import escape_controls
from llmnas.task.spec import TaskSpec
from llmnas.version import VERSION
from sandbox.protocol import STDOUT_FILE

log = logging.getLogger("llmnas")

MAX_CODE_CHARS = 100_000
MAX_REPLY_CHARS = 30_000
MAX_STDOUT_CHARS = 4_000


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, spec: str = "", none: str = "–") -> str:
    """A number formatted and escaped; None, NaN and non-numbers print as ``none``."""
    v = number(value)
    if v is None:
        return none if value is None or isinstance(value, int | float) else esc(value)
    if spec in (",", ",d"):
        return f"{int(round(v)):,}"
    return esc(format(v, spec))


CSS = """
:root { --fg:#1d2433; --muted:#5b6478; --line:#e3e6ec; --bg:#f6f7f9; --accent:#2f6fde; --ok:#1e8e3e;
  --bad:#c5221f; --warn:#b06000; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:14px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Helvetica, Arial, sans-serif; }
main { max-width:1180px; margin:0 auto; padding:24px 28px 60px; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:18px; margin:0 0 12px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h3 { font-size:14px; margin:14px 0 6px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:18px 22px; margin:18px 0; }
.sub { color:var(--muted); margin:0 0 8px; }
.chips { display:flex; flex-wrap:wrap; gap:8px; margin-top:12px; }
.chip { background:#fff; border:1px solid var(--line); border-radius:6px; padding:6px 12px; }
.chip b { display:block; font-size:18px; }
.chip span { color:var(--muted); font-size:12px; }
.status { display:inline-block; border-radius:10px; padding:1px 9px; font-size:12px; font-weight:600;
  vertical-align:middle; margin-left:8px; }
.s-finished { background:#e6f4ea; color:var(--ok); } .s-incomplete, .s-stopped { background:#fef7e0; color:var(--warn); }
.s-empty { background:#eceff3; color:var(--muted); }
.note { background:#fef7e0; border-left:3px solid #f0b400; padding:8px 12px; margin:10px 0; border-radius:4px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:18px; }
pre { background:#f7f8fa; border:1px solid var(--line); border-radius:6px; padding:10px 12px; overflow:auto;
  font:12.5px/1.45 "DejaVu Sans Mono", Menlo, Consolas, monospace; margin:6px 0; max-height:520px; }
pre.wrap, pre.code { white-space:pre-wrap; overflow-wrap:anywhere; }
.facts { margin:4px 0 6px; color:var(--muted); } .facts b { color:var(--fg); font-weight:600; }
ul.notes { margin:2px 0 8px; padding-left:20px; }
table.metrics { width:auto; margin:6px 0; } table.metrics th, table.metrics td { padding:3px 10px; }
img.plot { width:100%; height:auto; display:block; margin:4px 0 2px; }
.caption { color:var(--muted); font-size:12.5px; margin:2px 0 14px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:5px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#fafbfc; color:var(--muted); font-weight:600; white-space:nowrap; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.best td { background:#fff8d6; }
table.kv td:first-child { color:var(--muted); white-space:nowrap; width:1%; padding-right:18px; }
.bar { background:#edf0f5; border-radius:3px; height:10px; min-width:80px; position:relative; }
.bar i { position:absolute; left:0; top:0; bottom:0; border-radius:3px; background:var(--accent); }
.dot { display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:6px; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
code, .mono { font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12.5px; }
.ok { color:var(--ok); font-weight:600; } .bad { color:var(--bad); font-weight:600; }
.pending { color:var(--muted); font-weight:600; }
details.cand { border:1px solid var(--line); border-radius:6px; margin:6px 0; background:#fff; }
details.cand > summary { cursor:pointer; padding:7px 12px; list-style-position:inside; }
details.cand[open] > summary { border-bottom:1px solid var(--line); background:#fafbfc; }
details.cand > div { padding:8px 14px 12px; }
details.cand .msg { color:var(--bad); }
.muted { color:var(--muted); }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:30px; }
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _bar(fraction: float | None, colour: str | None = None) -> str:
    f = max(0.0, min(1.0, fraction or 0.0))
    style = f"width:{f * 100:.1f}%" + (f";background:{colour}" if colour else "")
    return f'<div class="bar"><i style="{style}"></i></div>'


def _kv(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _anchor(run: RunData) -> dict[str, str]:
    """candidate id -> the HTML id of its evaluated entry (the first proposal that is not a duplicate)."""
    out: dict[str, str] = {}
    for c in run.candidates:
        if c.candidate_id is not None and c.stage != "duplicate":
            out.setdefault(c.candidate_id, f"cand-{c.index}")
    return out


def _link(cid: str | None, anchors: dict[str, str]) -> str:
    if cid is None:
        return '<span class="muted">(rejected)</span>'
    if cid in anchors:
        return f'<a class="mono" href="#{anchors[cid]}">{esc(cid)}</a>'
    return f'<span class="mono">{esc(cid)}</span>'


def _read(path: Path, limit: int, tail: bool = False) -> str | None:
    """A file a candidate or model wrote, cut to ``limit`` characters, control characters escaped."""
    try:
        text = escape_controls(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    if len(text) <= limit:
        return text
    if tail:
        return f"[... {len(text) - limit:,} characters cut ...]\n" + text[-limit:]
    return text[:limit] + f"\n[... {len(text) - limit:,} more characters cut ...]"


def _header(run: RunData, s: dict, live: bool = False) -> str:
    best = s["best"]
    chips = [
        (f"{s['proposed']}" + (f" / {s['budget']}" if s["budget"] else ""), "proposed / budget"),
        (str(s["evaluated"]), "evaluated in the sandbox"),
        (str(s["passed"]), "passed"),
        (str(s["failed"]), "failed"),
    ]
    if best:
        chips += [
            (fmt(quality(best), ".4f"), f"best val {run.score_name} ({esc(best['candidate_id'])})"),
            (fmt(best["params"], ","), "params of the best"),
        ]
    chip_html = "".join(f'<div class="chip"><b>{v}</b><span>{label}</span></div>' for v, label in chips)
    notes = []
    if s["status"] == "incomplete":
        notes.append(
            f"This run is still going or was interrupted: {s['proposed']} of {s['budget'] or '?'} "
            f"candidates proposed, {s['pending']} awaiting evaluation. "
            + (
                "If it was interrupted, continue"
                if live
                else "Regenerate the report for newer results, or continue"
            )
            + f" with <code>llmnas resume {esc(run.folder)}</code>."
        )
    if s["status"] == "stopped":
        notes.append(f"The run stopped early: {esc(s['stopped_reason'])}")
    if s["status"] == "empty":
        notes.append("No candidate has been proposed yet.")
    return (
        f"<header><h1>llmnas run <span class='mono'>{esc(s['run'])}</span>"
        f"<span class='status s-{esc(s['status'])}'>{esc(s['status'])}</span></h1>"
        f"<p class='sub'>{esc(s['requirements'])}</p>"
        f"<p class='sub'>created {esc((s['created'] or '?').split('.')[0])} · last event {esc(s['last_event'] or 'none')}"
        f" · data <b>{esc(s['data'])}</b> · proposer <b>{esc(s['llm'])}</b>"
        f"{' (' + esc(s['strategy']) + ')' if s['llm'] == 'offline' and s['strategy'] else ''}"
        f" · seed {esc(s['seed'])}</p>"
        f'<div class="chips">{chip_html}</div>'
        + "".join(f'<div class="note">{n}</div>' for n in notes)
        + "</header>"
    )


def _spec_text(spec: dict) -> str:
    try:
        text = TaskSpec.model_validate(spec).summary()
    except Exception:  # an older or hand-edited spec: show it as it is
        return json.dumps(spec, indent=1, default=str)
    if spec.get("hints"):
        text += "\nhints: " + " | ".join(map(str, spec["hints"]))
    return text


def _requirements(run: RunData) -> str:
    cfg = run.record.config
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    versions = run.record.versions
    config_rows = [
        ("data", esc(cfg.get("data"))),
        ("proposer", esc(cfg.get("llm")) + (f" ({esc(cfg.get('strategy'))})" if cfg.get("strategy") else "")),
        ("budget", esc(cfg.get("budget"))),
        ("workers", esc(cfg.get("workers") or "what the executor has room for")),
        ("device", esc(cfg.get("device"))),
        (
            "training",
            f"{esc(train.get('max_steps'))} steps"
            + (
                f" or {esc(train['max_seconds'])} s (by time: not reproducible)"
                if train.get("max_seconds")
                else ""
            )
            + ", "
            f"batch {esc(train.get('batch_size'))}, lr {esc(train.get('lr'))}",
        ),
        ("seed", esc(run.record.seed)),
        ("versions", esc(", ".join(f"{k} {v}" for k, v in versions.items()))),
    ]
    refinements = ""
    if run.view.refinements:
        items = []
        for r in run.view.refinements:
            items.append(f"<li><b>{esc(r.time)}</b>: {esc(r.text)}</li>")
        refinements = f"<h3>Refinements</h3><ul>{''.join(items)}</ul>"
    spec_title = "Parsed spec (after the last refinement)" if run.view.refinements else "Parsed spec"
    return (
        '<section id="requirements"><h2>Requirements and spec</h2><div class="grid2"><div>'
        f"<h3>Requirements (requirements.md)</h3><pre class='wrap'>{esc(run.requirements.strip())}</pre>"
        f"{refinements}</div><div><h3>{spec_title}</h3><pre class='wrap'>{esc(_spec_text(run.spec))}</pre>"
        f"<h3>Configuration</h3>{_kv(config_rows)}</div></div></section>"
    )


def _score_rows(run: RunData, b: Candidate) -> list[tuple[str, str]]:
    """The best model's validation and test scores (test: reported only)."""
    if run.score_name == "accuracy":
        return [
            ("validation accuracy", fmt(b.metric("val_acc"), ".4f")),
            ("test accuracy (reported only)", fmt(b.metric("test_acc"), ".4f")),
        ]
    return [
        (
            f"{name} R² / MAE / RMSE" + (" (reported only)" if split == "test" else ""),
            f"{fmt(b.metric(f'{split}_r2'), '.4f')} / {fmt(b.metric(f'{split}_mae'), '.4g')} / "
            f"{fmt(b.metric(f'{split}_rmse'), '.4g')}",
        )
        for split, name in (("val", "validation"), ("test", "test"))
    ]


def _final_rows(run: RunData) -> list[tuple[str, str]]:
    """--final-train: the chosen model trained again on train + validation, its test score reported once."""
    if not run.view.finals:
        return []
    f = run.view.finals[-1]
    text = (
        f"{esc(scores_text(f.metrics.model_dump(), ('test',)))} ({f.train_samples:,} training samples)"
        if f.ok
        else f"failed ({esc(f.stage)}): {esc(f.message)}"
    )
    return [(f"{f.candidate_id} trained again on train + validation (reported once)", text)]


def _best(run: RunData, anchors: dict[str, str]) -> str:
    board, why = ranked(run)
    if not board:
        return ""
    b = board[0]
    bundle = run.folder / "best"
    where = (
        f"Standalone bundle: <code>{esc(bundle)}</code> (model.py, weights, README.md)."
        if bundle.is_dir()
        else ""
    )
    rows = [
        ("candidate", _link(b.candidate_id, anchors)),
        *_score_rows(run, b),
        *_final_rows(run),
        ("parameters", fmt(b.metric("params"), ",")),
        ("FLOPs", fmt(b.metric("flops"), ",")),
        (
            "latency",
            f"{fmt(b.metric('latency_ms'), '.3f')} ms (IQR {fmt(b.metric('latency_iqr_ms'), '.3f')})",
        ),
        ("peak memory", f"{fmt(b.metric('peak_mem_mb'), '.1f')} MiB"),
        ("found by", f"{esc(b.operator)} ({esc(b.variant)}), round {esc(b.round)}"),
    ]
    return f'<section id="best"><h2>Best model</h2><p>{esc(why)}</p>{_kv(rows)}<p class="caption">{where}</p></section>'


def _plots(run: RunData, pareto: bytes, progress: bytes) -> str:
    over = [c for c in run.candidates if c.ok and c.over_limit]
    unplotted = [c for c in run.candidates if c.status == "failed" and c.stage == "budget" and not c.metrics]
    score = f"validation {run.score_name}"
    cap = [
        f"Orange: the 2-D Pareto front (higher {run.score_name}, fewer parameters or lower latency), joined by its "
        f"attainment line; star: the best {score}; grey crosses: candidates that ran but "
        "break a limit; dashed red: the spec's hard limit."
    ]
    if unplotted:
        cap.append(
            f"{len(unplotted)} candidate(s) rejected over a limit before training are not plotted "
            f"(no {run.score_name})."
        )
    if over:
        cap.append(f"{len(over)} passing candidate(s) break a limit added by a refinement (greyed).")
    return (
        '<section id="pareto"><h2>Pareto front</h2>'
        f"{_img(pareto, f'Pareto front: {score} against parameters and latency')}"
        f'<p class="caption">{esc(" ".join(cap))}</p></section>'
        '<section id="progress"><h2>Search progress</h2>'
        f"{_img(progress, f'Search progress: best {score} so far per candidate')}"
        '<p class="caption">Each dot is a passing candidate (coloured by the operator that proposed it), '
        f"in the order proposed; the black line is the best {score} so far within the limits; "
        "red crosses along the bottom are failures.</p></section>"
    )


def _carbon(run: RunData, png: bytes | None) -> str:
    """CO2 over time, when evaluations carry an estimate (every run since the estimate was added)."""
    if png is None:
        return ""
    grams = sum(c.metric("co2_g") or 0.0 for c in run.candidates)
    kwh = sum(c.metric("energy_kwh") or 0.0 for c in run.candidates)
    cfg = run.record.config
    paused = sum(p.seconds for p in run.view.pauses)
    how = (
        f"charged the forecast's intensity ({esc(cfg.get('carbon_forecast'))}) at its time; grey bands: "
        f"{len(run.view.pauses)} pause(s) for lower-carbon windows, {paused / 3600:.2f} h in all"
        if cfg.get("carbon_forecast")
        else f"charged the constant {fmt(cfg.get('carbon_g_per_kwh'), 'g')} gCO2/kWh"
    )
    return (
        '<section id="carbon"><h2>Energy and CO2</h2>'
        f"{_img(png, 'Estimated CO2 over time and the grid intensity each evaluation was charged')}"
        f'<p class="caption">Estimated {fmt(kwh * 1000, ".3g")} Wh and {fmt(grams, ".3g")} g CO2 in all: '
        f"each evaluation's wall time in its worker times {fmt(cfg.get('power_watts'), 'g')} W, {how}. "
        "Black: CO2 so far; orange dots: the intensity each evaluation was charged (right axis), over the "
        "forecast when there is one.</p>"
        "</section>"
    )


def _leaderboard(run: RunData, anchors: dict[str, str]) -> str:
    rows = leaderboard_rows(run)
    if not rows:
        return '<section id="leaderboard"><h2>Leaderboard</h2><p class="muted">No candidate has passed yet.</p></section>'
    short = "acc" if run.score_name == "accuracy" else "R²"
    val_key, test_key = ("val_acc", "test_acc") if short == "acc" else ("val_r2", "test_r2")
    head = (
        f"<tr><th class='n'>#</th><th>candidate</th><th class='n'>val {short}</th><th class='n'>test {short}*</th>"
        "<th class='n'>params</th><th class='n'>FLOPs</th><th class='n'>latency ms</th>"
        "<th class='n'>reward</th><th>operator</th><th>front</th></tr>"
    )
    body = []
    for r in rows:
        op = r["operator"] or "?"
        variant = f" <span class='muted'>({esc(r['variant'])})</span>" if r["variant"] else ""
        body.append(
            f"<tr class='{'best' if r['rank'] == 1 else ''}'><td class='n'>{r['rank']}</td>"
            f"<td>{_link(r['candidate_id'], anchors)}</td>"
            f"<td class='n'>{fmt(r[val_key], '.4f')}</td><td class='n'>{fmt(r[test_key], '.4f')}</td>"
            f"<td class='n'>{fmt(r['params'], ',')}</td><td class='n'>{fmt(r['flops'], ',')}</td>"
            f"<td class='n'>{fmt(r['latency_ms'], '.3f')}</td><td class='n'>{fmt(r['reward'], '.3f')}</td>"
            f"<td><span class='dot' style='background:{operator_colour(r['operator'])}'></span>{esc(op)}{variant}</td>"
            f"<td>{'★' if r['pareto'] else ''}</td></tr>"
        )
    return (
        '<section id="leaderboard"><h2>Leaderboard</h2>'
        f'<table id="leaderboard-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
        f'<p class="caption">Ranked by validation {run.score_name}, then lower validation loss, then fewer '
        f"parameters. * Test {run.score_name} is reported only: it is never used to choose or rank. "
        f"★ on the Pareto front over (val {short}, params, latency).</p></section>"
    )


def _statistics(run: RunData) -> str:
    ops = operator_stats(run)
    if ops:
        rows = "".join(
            f"<tr><td><span class='dot' style='background:{operator_colour(r['operator'])}'></span>"
            f"{esc(r['operator'])}</td><td class='n'>{r['count']}</td><td class='n'>{r['passed']}</td>"
            f"<td class='n'>{r['pass_rate']:.0%}</td><td>{_bar(r['pass_rate'], operator_colour(r['operator']))}</td>"
            f"<td class='n'>{fmt(r['mean_reward'], '.3f')}</td><td class='n'>{fmt(r['best_val'], '.4f')}</td></tr>"
            for r in ops
        )
        op_table = (
            "<table><thead><tr><th>operator</th><th class='n'>count</th><th class='n'>passed</th>"
            "<th class='n'>pass rate</th><th></th><th class='n'>mean reward</th><th class='n'>best val</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        op_table = "<p class='muted'>No finished proposal yet.</p>"
    stages = failure_stages(run)
    if stages:
        top = max(s["count"] for s in stages)
        rows = "".join(
            f"<tr><td><b>{esc(s['stage'])}</b></td><td class='n'>{s['count']}</td>"
            f"<td style='width:22%'>{_bar(s['count'] / top, '#C44E52')}</td>"
            f"<td class='muted'>{esc(_short(s['example'], 160))}</td></tr>"
            for s in stages
        )
        stage_table = (
            "<table><thead><tr><th>stage</th><th class='n'>failures</th><th></th><th>example</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>"
        )
    else:
        stage_table = "<p class='muted'>No failures.</p>"
    policy = policy_probabilities(run)
    heads = []
    for head, probs in policy.items():
        if not probs:
            continue
        rows = "".join(
            f"<tr><td class='mono'>{esc(k)}</td><td class='n'>{v:.1%}</td><td style='width:55%'>{_bar(v)}</td></tr>"
            for k, v in sorted(probs.items(), key=lambda kv: -kv[1])
        )
        heads.append(f"<div><h3>{esc(head)}</h3><table><tbody>{rows}</tbody></table></div>")
    round_no = run.view.rounds[-1].round if run.view.rounds else None
    policy_html = (
        f"<p class='sub'>After round {esc(round_no)} (the last \"round\" event). The policy learns which "
        "operator, prompt variant, temperature and parent selector earn reward.</p>"
        f"<div class='grid2'>{''.join(heads)}</div>"
        if heads
        else "<p class='muted'>No round has finished yet.</p>"
    )
    usage = llm_usage(run)
    usage_html = ""
    if usage:
        usage_html = "<h3>Language model usage</h3>" + _kv(
            [
                ("models", esc(", ".join(usage["models"]))),
                ("calls", f"{usage['calls']:,} ({usage['failures']:,} failed)"),
                (
                    "tokens",
                    f"{int(usage['prompt_tokens']):,} prompt + {int(usage['completion_tokens']):,} completion",
                ),
                ("cost", f"${usage['cost_usd']:.4f}"),
            ]
        )
    return (
        '<section id="operators"><h2>Operators and policy</h2>'
        f"<h3>Per operator</h3>{op_table}"
        f"<h3>Failures by stage</h3>{stage_table}{usage_html}"
        f"<h3>Final policy probabilities</h3>{policy_html}</section>"
    )


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


METRIC_FORMATS = {
    "val_acc": ("val acc", ".4f"),
    "test_acc": ("test acc", ".4f"),
    "val_r2": ("val R²", ".4f"),
    "val_mae": ("val MAE", ".4g"),
    "val_rmse": ("val RMSE", ".4g"),
    "test_r2": ("test R²", ".4f"),
    "test_mae": ("test MAE", ".4g"),
    "test_rmse": ("test RMSE", ".4g"),
    "params": ("params", ","),
    "flops": ("FLOPs", ","),
    "depth": ("depth", "g"),
    "latency_ms": ("latency ms", ".4f"),
    "latency_iqr_ms": ("IQR ms", ".4f"),
    "peak_mem_mb": ("peak MiB", ".1f"),
    "train_steps": ("steps", ","),
    "train_seconds": ("train s", ".2f"),
}


def _metrics_table(c: Candidate) -> str:
    """The metrics as one compact row (known ones first); nested ones (proxies) as a line below."""
    m = c.metrics
    keys = [k for k in METRIC_FORMATS if k in m] + [
        k for k in m if k not in METRIC_FORMATS and not isinstance(m[k], dict)
    ]
    if not keys:
        return ""
    head = "".join(f"<th class='n'>{esc(METRIC_FORMATS.get(k, (k,))[0])}</th>" for k in keys)
    row = "".join(
        f"<td class='n'>{fmt(m[k], METRIC_FORMATS.get(k, (k, 'g'))[1]) if number(m[k]) is not None else esc(m[k])}</td>"
        for k in keys
    )
    nested = [
        f"{esc(k)}: "
        + esc(", ".join(f"{a}={b:.4g}" if number(b) is not None else f"{a}={b}" for a, b in v.items()))
        for k, v in m.items()
        if isinstance(v, dict) and v
    ]
    extra = f"<p class='caption'>{'<br>'.join(nested)}</p>" if nested else ""
    return (
        f"<table class='metrics'><thead><tr>{head}</tr></thead><tbody><tr>{row}</tr></tbody></table>{extra}"
    )


def _candidate(c: Candidate, run: RunData, anchors: dict[str, str]) -> str:
    op = esc(c.operator or "?") + (f" ({esc(c.variant)})" if c.variant else "")
    if c.ok:
        flag = (
            f"<span class='ok'>✓ val {fmt(c.quality, '.4f')}</span> · {fmt(c.metric('params'), ',')} params"
        )
        if c.over_limit:
            flag += " · <span class='bad'>over a refined limit</span>"
    elif c.status == "failed":
        flag = f"<span class='bad'>✗ {esc(c.stage)}</span> <span class='muted'>{esc(_short(c.message, 110))}</span>"
    else:
        flag = "<span class='pending'>… awaiting evaluation</span>"
    cid = (
        f"<span class='mono'>{esc(c.candidate_id)}</span>"
        if c.candidate_id
        else "<span class='muted'>(rejected)</span>"
    )
    summary_line = f"<b>#{c.index}</b> {cid} · {op} · {flag}"
    facts = [
        f"round <b>{esc(c.round)}</b>, slot {esc(c.slot)}",
        f"temperature <b>{fmt(c.temperature, 'g')}</b>",
        f"selector <b>{esc(c.selector)}</b>",
    ]
    if c.parents:
        facts.append("parents " + ", ".join(_link(p, anchors) for p in c.parents))
    if c.repairs:
        facts.append(f"repair attempts <b>{esc(c.repairs)}</b>")
    if c.reward is not None:
        facts.append(f"reward <b>{fmt(c.reward, '.4f')}</b>")
    if c.usage:
        facts.append("LLM usage " + esc(", ".join(f"{k}={v}" for k, v in c.usage.items())))
    parts = [f"<p class='facts'>{' · '.join(facts)}</p>"]
    if c.notes:
        parts.append("<ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in c.notes) + "</ul>")
    if c.status == "failed":
        parts.append(
            f"<h3>Failure: {esc(c.stage)}</h3><pre class='wrap msg'>{esc(c.message or '(no message)')}</pre>"
        )
    if c.over_limit:
        parts.append(f"<p class='bad'>Over a limit of the current spec: {esc('; '.join(c.over_limit))}</p>")
    table = _metrics_table(c)
    if table:
        parts.append(table)
    folder = RunLayout(run.folder).candidate(c.safe_id) if c.safe_id else None
    if folder is not None and c.stage != "duplicate":
        code = _read(folder / CODE, MAX_CODE_CHARS)
        if code is not None:
            parts.append(f"<h3>Code (model.py)</h3><pre class='code'><code>{esc(code)}</code></pre>")
        reply = _read(folder / REPLY, MAX_REPLY_CHARS)
        if reply:
            parts.append(
                f"<details><summary>Model reply (reply.md)</summary><pre class='wrap'>{esc(reply)}</pre></details>"
            )
        if c.status == "failed":
            out = _read(folder / STDOUT_FILE, MAX_STDOUT_CHARS, tail=True)
            if out and out.strip():
                parts.append(
                    f"<details><summary>Output (stdout.txt, last lines)</summary><pre>{esc(out)}</pre></details>"
                )
    elif c.stage == "duplicate" and c.candidate_id:
        parts.append(f"<p class='muted'>Same code as {_link(c.candidate_id, anchors)}.</p>")
    return f"<details class='cand' id='cand-{c.index}'><summary>{summary_line}</summary><div>{''.join(parts)}</div></details>"


def _candidates(run: RunData, anchors: dict[str, str]) -> str:
    if not run.candidates:
        return '<section id="candidates"><h2>Candidates</h2><p class="muted">None yet.</p></section>'
    items = "".join(_candidate(c, run, anchors) for c in run.candidates)
    return (
        '<section id="candidates"><h2>Candidates</h2>'
        "<p class='sub'>Every proposal in order; open one for its code, metrics or failure.</p>"
        f"{items}</section>"
    )


def _problems(run: RunData) -> str:
    """Log lines that could not be read (cut short, malformed, out of range): shown, never fatal."""
    if not run.view.problems:
        return ""
    items = "".join(f"<li class='mono'>{esc(p)}</li>" for p in run.view.problems[:50])
    more = (
        f"<p class='muted'>... and {len(run.view.problems) - 50} more</p>"
        if len(run.view.problems) > 50
        else ""
    )
    return f"<section id='problems'><h2>Skipped log lines</h2><ul>{items}</ul>{more}</section>"


def live_sections(run: RunData, pareto: bytes, progress: bytes) -> str:
    """A run as the live dashboard shows it (report/dashboard.py): the header with a progress bar, the
    plots and the leaderboard (ids not linked: the page holds no code) and any skipped log lines."""
    s = summary(run)
    bar = _bar(s["proposed"] / s["budget"]) if s["budget"] else ""
    return (
        f"{_header(run, s, live=True)}{bar}{_plots(run, pareto, progress)}"
        f"{_leaderboard(run, {})}{_problems(run)}"
    )


def render_html(run: RunData, pareto: bytes, progress: bytes, carbon: bytes | None = None) -> str:
    s = summary(run)
    anchors = _anchor(run)
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    nav = " · ".join(
        f"<a href='#{k}'>{v}</a>"
        for k, v in (
            ("requirements", "requirements"),
            ("pareto", "Pareto front"),
            ("progress", "progress"),
            *([("carbon", "CO2")] if carbon is not None else []),
            ("leaderboard", "leaderboard"),
            ("operators", "operators"),
            ("candidates", "candidates"),
        )
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>llmnas report: {esc(s['run'])}</title><style>{CSS}</style></head><body><main>"
        f"{_header(run, s)}<p class='sub'>{nav}</p>"
        f"{_requirements(run)}{_best(run, anchors)}{_plots(run, pareto, progress)}"
        f"{_carbon(run, carbon)}"
        f"{_leaderboard(run, anchors)}{_statistics(run)}{_candidates(run, anchors)}{_problems(run)}"
        f"<footer>Generated {esc(generated)} by llmnas {esc(VERSION)} from {esc(run.folder)}</footer>"
        "</main></body></html>\n"
    )


def render_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``out`` (default RUN/report.html) and RUN/plots/{pareto,progress,carbon}.png; returns the HTML
    path."""
    run = load_run(Path(run_dir))
    pareto, progress, carbon = pareto_png(run), progress_png(run), carbon_png(run)
    plots = RunLayout(run.folder).plots
    try:
        plots.mkdir(exist_ok=True)
        write_atomic(plots / "pareto.png", pareto)
        write_atomic(plots / "progress.png", progress)
        if carbon is not None:
            write_atomic(plots / "carbon.png", carbon)
    except OSError as exc:  # a read-only run folder still gets its report elsewhere
        log.warning("could not write plots into %s: %s", plots, exc)
    path = Path(out) if out is not None else RunLayout(run.folder).report
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_html(run, pareto, progress, carbon))
    return path
