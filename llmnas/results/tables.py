"""Plain-text tables for the terminal: the leaderboard of `llmnas show` and the runs of `llmnas list`."""

from __future__ import annotations

from llmnas.metrics import quality
from llmnas.safe_text import escape_controls


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table: columns are (key, header, format spec); None prints as "-"; text from a run
    folder is escaped (no control characters reach the terminal)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        line = []
        for key, _, spec in columns:
            v = row.get(key)
            try:
                text = "-" if v is None else format(v, spec)
            except (TypeError, ValueError):
                text = str(v)
            line.append(escape_controls(text).replace("\n", " "))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


LEADERBOARD_COLUMNS = [
    ("rank", "#", ""),
    ("candidate_id", "candidate", ""),
    ("val_acc", "val acc", ".4f"),
    ("test_acc", "test acc*", ".4f"),
    ("params", "params", ","),
    ("flops", "FLOPs", ","),
    ("latency_ms", "latency ms", ".3f"),
    ("reward", "reward", ".3f"),
    ("operator", "operator", ""),
]

REGRESSION_COLUMNS = [
    *LEADERBOARD_COLUMNS[:2],
    ("val_r2", "val R²", ".4f"),
    ("val_mae", "val MAE", ".4g"),
    ("val_rmse", "val RMSE", ".4g"),
    ("test_r2", "test R²*", ".4f"),
    ("test_mae", "test MAE*", ".4g"),
    *LEADERBOARD_COLUMNS[4:],
]

RUNS_COLUMNS = [
    ("run", "run", ""),
    ("status", "status", ""),
    ("proposed", "proposed", ""),
    ("passed", "passed", ""),
    ("best_val", "best val", ".4f"),
    ("best_params", "params", ","),
    ("requirements", "requirements", ""),
]


def format_leaderboard(rows: list[dict]) -> str:
    """`llmnas show` output (regression columns when the run is a regression); test scores are marked as
    reported only."""
    if not rows:
        return "no candidate has passed yet"
    regression = any(r.get("val_r2") is not None for r in rows)
    columns = REGRESSION_COLUMNS if regression else LEADERBOARD_COLUMNS
    return format_table(rows, columns) + "\n* test scores are reported only, never used to choose"


def format_runs(rows: list[dict]) -> str:
    """`llmnas list` output."""
    if not rows:
        return "no runs"
    flat = [
        r
        | {
            "best_val": quality(r.get("best") or {}),
            "best_params": (r.get("best") or {}).get("params"),
            "requirements": str(r.get("requirements") or r.get("error") or "")[:60],
        }
        for r in rows
    ]
    return format_table(flat, RUNS_COLUMNS)
